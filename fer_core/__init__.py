"""fer_core: the pure-PyTorch library under fertune (data, models, training, inference). Never imports ray."""
from fer_core.labels import CLASSES

__all__ = ["CLASSES"]
__version__ = "0.1.0"
