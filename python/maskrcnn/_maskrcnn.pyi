"""Type stubs of the compiled extension (``maskrcnn._maskrcnn``)."""

import os
import pathlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
Image = Union[npt.NDArray[np.uint8], npt.NDArray[np.uint16], npt.NDArray[np.float32], PathLike]

class Detection(TypedDict):
    box: List[float]
    """[x1, y1, x2, y2] in pixels of the image."""
    label: int
    """The category id (as in COCO results and the training data)."""
    class_name: str
    score: float
    mask: npt.NDArray[np.bool_]
    """HxW, the size of the image."""

class Model:
    """A model loaded by :func:`load`."""

    @property
    def classes(self) -> List[str]:
        """Class names, without the background."""
    @property
    def category_ids(self) -> List[int]:
        """The category id of each class of :attr:`classes`."""
    @property
    def config(self) -> Dict[str, Any]:
        """The model configuration (``config.json`` of a model folder)."""
    @property
    def path(self) -> pathlib.Path:
        """The path given to :func:`load`."""
    @property
    def weights_path(self) -> pathlib.Path:
        """The weights file read."""
    def predict(
        self,
        image: Image,
        score_threshold: Optional[float] = None,
        max_detections: Optional[int] = None,
    ) -> List[Detection]:
        """Objects in one image (HxWxC or HxW array of raw values, or an image path), best first.

        None keeps the model's own score threshold and detection cap (torchvision's 0.05 and 100
        unless the model stored others), as ``maskrcnn predict`` without flags does."""
    def predict_batch(
        self,
        images: Sequence[Image],
        score_threshold: Optional[float] = None,
        max_detections: Optional[int] = None,
    ) -> List[List[Detection]]:
        """:meth:`predict` for each image."""

def load(path: PathLike) -> Model:
    """Loads a .pth/.safetensors state dict, a model folder, a run folder, an .emd or a .dlpk."""

def run_command(
    args: List[str],
    progress: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Optional[Tuple[int, int, int]]:
    """Runs ``maskrcnn ARGS...`` in-process; a detect run returns (tiles done, tiles total, objects)."""
