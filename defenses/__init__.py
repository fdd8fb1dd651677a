"""Defense registry. Defenses (input transforms, depth filtering, patch defenses) arrive in a later
issue; ``none`` is the undefended model every attack cell uses today."""
from torch import nn

DEFENSES: dict[str, type[nn.Module] | None] = {
    "none": None,
}
