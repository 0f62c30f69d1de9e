"""PyTorch checkpoint files read without PyTorch: tensors to numpy, nothing else unpickled.

``torch.save`` writes a pickle whose tensors point at raw storages, in one of two
layouts:

* **zip** (torch >= 1.6): a zip archive holding ``<root>/data.pkl`` (the
  pickled object, storages as persistent ids ``("storage", StorageType, key,
  location, numel)``) and every storage's bytes in ``<root>/data/<key>``
  (little-endian unless ``<root>/byteorder`` says otherwise);
* **legacy** (torch < 1.6; the CSAIL Places365 files of 2017): five pickles in
  a row, the magic number, the protocol version, system information, the
  object (storages as ``("storage", StorageType, key, location, numel,
  view)``) and the storage keys in file order, followed by each storage as an
  int64 element count and its bytes.

:func:`load` reads both with an unpickler that admits a fixed list of globals:
tensor and parameter rebuilders, storage types and ``collections.OrderedDict``.
Any other object in the file (a pickled class, a function, a ``numpy`` object)
is refused by name, so reading a checkpoint never runs code from it: safe by
construction, and ``torch`` is never imported.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

from sskt_tf.errors import ConfigError

# torch.save's legacy header.
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
# torch storage types and the numpy dtype of their elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UntrustedObjectError(ConfigError):
    """The checkpoint holds an object other than tensors and plain containers (refused, never built)."""


class _Refused(pickle.UnpicklingError):
    pass


class _StorageType:
    """Stands for a ``torch.<X>Storage`` class named in the pickle."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage's elements once its bytes are read (``array`` is None until then)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.array = None


class _LazyTensor:
    """A tensor whose storage bytes may come later in the file (legacy layout)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self):
        flat = self.storage.array
        if not self.size:
            return np.array(flat[self.offset])
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=[s * itemsize for s in self.stride], writeable=False
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    del unused  # requires_grad, backward hooks, metadata
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused  # requires_grad, backward hooks
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers, numbers, strings and tensors; refuses every other global."""

    def __init__(self, file, load_storage):
        # latin1 decodes the byte strings of checkpoints pickled by Python 2.
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError(f"unknown persistent id {saved_id!r:.60}")
        return self._load_storage(*saved_id[1:])


def _no_storage(*saved_id):
    raise pickle.UnpicklingError("a tensor where none belongs")


def _load_plain(file):
    """One pickle that must hold plain values only (the legacy layout's header pickles)."""
    return _RestrictedUnpickler(file, _no_storage).load()


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError("a zip file without one data.pkl is not a torch.save checkpoint")
        root = pickles[0][: -len("data.pkl")]
        order = "<"
        if f"{root}byteorder" in names and archive.read(f"{root}byteorder").strip() == b"big":
            order = ">"
        storages = {}

        def load_storage(storage_type, key, location, numel, *unused):
            del location, unused
            key = str(key)
            if key not in storages:
                storage = _Storage(storage_type.dtype)
                data = archive.read(f"{root}data/{key}")
                storage.array = np.frombuffer(data, storage_type.dtype.newbyteorder(order))[: int(numel)]
                storages[key] = storage
            return storages[key]

        with archive.open(pickles[0]) as f:
            return _RestrictedUnpickler(io.BytesIO(f.read()), load_storage).load()


def _load_legacy(file):
    # Every pickle of the file goes through the restricted unpickler, the header's too.
    try:
        is_torch_file = _load_plain(file) == _MAGIC_NUMBER
    except _Refused:
        raise
    except Exception:
        is_torch_file = False
    if not is_torch_file:
        raise ValueError("not a torch.save file (neither a zip archive nor the legacy pickle layout)")
    if _load_plain(file) != _PROTOCOL_VERSION:
        raise ValueError("an unknown legacy header")
    _load_plain(file)  # system information (byte order, sizes)
    storages, views = {}, []

    def load_storage(storage_type, key, location, numel, view=None):
        del location, numel
        key = str(key)
        storages.setdefault(key, _Storage(storage_type.dtype))
        if view is None:
            return storages[key]
        view_key, offset, size = view
        shared = _Storage(storage_type.dtype)
        views.append((shared, key, int(offset), int(size)))
        return shared

    result = _RestrictedUnpickler(file, load_storage).load()
    for key in _load_plain(file):
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", file.read(8))
        data = file.read(count * storage.dtype.itemsize)
        if len(data) != count * storage.dtype.itemsize:
            raise ValueError("the file ends inside a tensor (truncated download?)")
        storage.array = np.frombuffer(data, storage.dtype.newbyteorder("<"))
    for shared, key, offset, size in views:
        shared.array = storages[key].array[offset : offset + size]
    return result


def _to_numpy(value):
    if isinstance(value, _LazyTensor):
        return value.numpy()
    if isinstance(value, dict):
        return type(value)((key, _to_numpy(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(item) for item in value)
    return value


def load(path):
    """Reads a ``torch.save`` file (zip or legacy layout) with every tensor as a numpy array.

    Args:
        path: the checkpoint file.

    Returns:
        The saved object (dicts, lists, numbers, strings) with tensors and
        parameters replaced by numpy arrays.

    Raises:
        UntrustedObjectError: the file holds an object other than tensors and
            plain containers (a class, a function): it is not built.
        ConfigError: the file is not a ``torch.save`` checkpoint, or is truncated.
    """
    try:
        if zipfile.is_zipfile(path):
            return _to_numpy(_load_zip(path))
        with open(path, "rb") as file:
            return _to_numpy(_load_legacy(file))
    except _Refused as refused:
        raise UntrustedObjectError(
            f"PyTorch checkpoint {path!r} holds a {refused} object; only tensors and plain containers "
            "are read without trusting the file (no code from it runs)."
        ) from None
    except (pickle.UnpicklingError, ValueError, EOFError, KeyError, struct.error, zipfile.BadZipFile) as error:
        raise ConfigError(f"Could not read PyTorch checkpoint {path!r}: {error}.") from error
