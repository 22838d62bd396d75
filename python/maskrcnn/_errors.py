"""The exceptions the engine raises, each carrying the command line's one-line message."""


class MaskRcnnError(RuntimeError):
    """A failure of the engine: unreadable data, a model that does not fit the data, and so on."""


class MaskRcnnFileNotFoundError(MaskRcnnError, FileNotFoundError):
    """A model, image, raster or dataset that does not exist."""


class MaskRcnnValueError(MaskRcnnError, ValueError):
    """An option the engine refuses: an unknown keyword, a value out of range or of the wrong kind."""
