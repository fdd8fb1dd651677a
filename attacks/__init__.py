"""Attack registry. Adding an attack is one module plus one line here."""
from .art_backend import ARTAttack
from .art_patch import ARTPatch
from .art_uap import ARTUniversalPerturbation
from .autoattack import StandardAutoAttack
from .base import CLASSIFICATION, Attack, AttackOutput, NoAttack
from .cw import CarliniWagnerL2
from .jsma import JSMA
from .natural import NaturalAdversary
from .patch import PatchAttack, UniversalPatch
from .threat import MODALITIES, AttackSpace, ThreatModel
from .torchattacks_backend import TorchattacksAttack
from .advgan import AdvGAN
from .uap import UniversalPerturbation
from .zoo import ZOO

ATTACKS: dict[str, Attack] = {
    "none": NoAttack(),
    # torchattacks, white-box gradient attacks
    "fgsm": TorchattacksAttack("FGSM", "linf"),
    "bim": TorchattacksAttack("BIM", "linf"),  # = I-FGSM
    "pgd": TorchattacksAttack("PGD", "linf", random_start=True),
    "pgdl2": TorchattacksAttack("PGDL2", "l2", random_start=True),
    "mifgsm": TorchattacksAttack("MIFGSM", "linf", decay=1.0),
    "rfgsm": TorchattacksAttack("RFGSM", "linf"),
    "difgsm": TorchattacksAttack("DIFGSM", "linf"),
    "nifgsm": TorchattacksAttack("NIFGSM", "linf"),
    "vmifgsm": TorchattacksAttack("VMIFGSM", "linf", N=5),
    "eotpgd": TorchattacksAttack("EOTPGD", "linf", eot_iter=2, random_start=True),
    # torchattacks, classifiers only; minimum-norm ones are kept where they fit the budget
    "autoattack": StandardAutoAttack(),  # the reference's standard version, from torchattacks' parts
    "square": TorchattacksAttack("Square", ("linf", "l2"), tasks=CLASSIFICATION, black_box=True),
    "fab": TorchattacksAttack("FAB", ("linf", "l2"), minimum_norm=True, tasks=CLASSIFICATION),
    "deepfool": TorchattacksAttack("DeepFool", "l2", minimum_norm=True, tasks=CLASSIFICATION),
    "ta-cw": TorchattacksAttack("CW", "l2", minimum_norm=True, tasks=CLASSIFICATION, c=1.0, lr=0.01),
    "ta-jsma": TorchattacksAttack("JSMA", "l0", minimum_norm=True, tasks=CLASSIFICATION, theta=1.0),
    # ART; art-fgm is fgsm and art-pgd (no random start) is bim, through the other library
    "art-fgm": ARTAttack("FastGradientMethod"),
    "art-pgd": ARTAttack("ProjectedGradientDescent", num_random_init=0),
    "art-square": ARTAttack("SquareAttack", black_box=True, p_init=0.1),
    # ART, classifiers only
    "art-cw": ARTAttack("CarliniL2Method", ("l2",), minimum_norm=True, tasks=CLASSIFICATION, binary_search_steps=5),
    "art-deepfool": ARTAttack("DeepFool", ("l2",), minimum_norm=True, tasks=CLASSIFICATION),
    "art-jsma": ARTAttack("SaliencyMapMethod", ("l0",), minimum_norm=True, tasks=CLASSIFICATION, targeted_only=True,
                          theta=1.0),
    "art-uap": ARTUniversalPerturbation(),  # fitted once on the train split
    "art-zoo": ARTAttack("ZooAttack", ("l2",), minimum_norm=True, tasks=CLASSIFICATION, black_box=True, batch_size=1,
                         use_resize=False, binary_search_steps=1, nb_parallel=64),
    "art-hsj": ARTAttack("HopSkipJump", ("l2", "linf"), minimum_norm=True, tasks=CLASSIFICATION, black_box=True),
    # our own attacks, for what the libraries do not cover on dense outputs
    "zoo": ZOO(),  # black-box (as square, art-square, art-zoo, art-hsj): queries counted per image, attacks/queries.py
    "jsma": JSMA(),  # sparse, L0
    "cw": CarliniWagnerL2(),
    "uap": UniversalPerturbation(),  # fitted once on the train split
    "advgan": AdvGAN(),  # a perturbation generator, trained once on the train split; one forward pass per image
    "natural": NaturalAdversary(),  # unrestricted: a GAN's latent space near the input's inversion
    "patch": PatchAttack(),  # adversarial patch (area budget), one per image
    "upatch": UniversalPatch(),  # one patch for the dataset, fitted once on the train split
    "art-patch": ARTPatch(),  # ART's AdversarialPatchPyTorch, classifiers only
}

__all__ = ["ATTACKS", "Attack", "AttackOutput", "AttackSpace", "MODALITIES", "ThreatModel"]
