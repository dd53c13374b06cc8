"""Every family registers its variants with timm on import."""
from . import mair
