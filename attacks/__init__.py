"""Attack registry. Adding an attack is one module plus one line here."""
from .art_backend import ARTAttack
from .art_patch import ARTPatch
from .base import Attack, AttackOutput, NoAttack
from .cw import CarliniWagnerL2
from .jsma import JSMA
from .patch import PatchAttack, UniversalPatch
from .threat import MODALITIES, AttackSpace, ThreatModel
from .torchattacks_backend import TorchattacksAttack
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
    # ART; art-fgm is fgsm and art-pgd (no random start) is bim, through the other library
    "art-fgm": ARTAttack("FastGradientMethod"),
    "art-pgd": ARTAttack("ProjectedGradientDescent", num_random_init=0),
    "art-square": ARTAttack("SquareAttack", p_init=0.1),
    # our own attacks, for what the libraries do not cover on dense outputs
    "zoo": ZOO(),  # black-box, query budget
    "jsma": JSMA(),  # sparse, L0
    "cw": CarliniWagnerL2(),
    "uap": UniversalPerturbation(),  # fitted once on the train split
    "patch": PatchAttack(),  # adversarial patch (area budget), one per image
    "upatch": UniversalPatch(),  # one patch for the dataset, fitted once on the train split
    "art-patch": ARTPatch(),  # ART's AdversarialPatchPyTorch, classifiers only
}

__all__ = ["ATTACKS", "Attack", "AttackOutput", "AttackSpace", "MODALITIES", "ThreatModel"]
