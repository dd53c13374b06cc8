"""Every family registers its variants with timm on import."""
from . import vim
from . import lbvim
from . import shufflemamba
from . import mair
from . import mobilemamba
from . import atrousmamba
from . import vmamba
