"""dlib's 128-d face descriptor as a torch module, read from dlib's own model file.

Why this module exists: matching faces to enrolled children needs dlib's ResNet face
descriptor (``dlib_face_recognition_resnet_model_v1.dat`` in
``face-recognition-models==0.3.0``), but dlib runs it one face at a time at about 76 ms
a face on our workers, holding the GIL, and a class photo has a dozen faces. This module
reads the ``.dat`` file with our own reader of dlib's serialization format, builds the
same network in torch (:class:`DlibResNet`), and runs every face of a photo in one
batch: 5.6-6.6 ms of CPU a face at one thread in batches of 8-16. On 32 real faces (the
shared photos, edits of them, a composed class photo) its descriptors equal dlib's
within a Euclidean distance of 1.3e-6 (the tests hold it to 1e-3), so
:data:`models.images.faces.MATCH_THRESHOLD` and every enrolled descriptor stay valid.

The format, as read from dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``,
``dnn/input.h`` and ``dnn/tensor.h``:

* an integer is a control byte (bit 0x80: negative; low four bits: byte count) and
  that many bytes of its absolute value, little-endian; a bool is ASCII ``'0'``/``'1'``;
  a string is its length (an integer) and its bytes;
* a float is two integers, a mantissa and a base-2 exponent (exponents 32000-32002 mean
  +inf, -inf and NaN);
* a tensor is an integer version (2), then num_samples, k, nr, nc, then its values as
  little-endian float32; an alias tensor (a view into a layer's parameter tensor) is a
  version (1) and the four sizes only;
* a network is written top-down as it is typed: the loss layer (version, loss details,
  subnetwork); each ``add_layer`` writes its version, then its whole subnetwork, then
  its own layer details and training state (three bools, the ``x_grad`` and
  ``cached_output`` tensors, and since version 2 ``params_grad``); tag and skip layers
  write a version and their subnetwork; the bottom ``add_layer`` writes the input layer
  before its details, and ``grad_final`` after. So the file opens with the versions of
  every layer from the top down, and the layer details follow from the bottom up.

Layer details: ``con_4`` (parameter tensor: filters (num_filters, k, nr, nc) then one
bias per filter; filter count, size, stride and padding; the two alias tensors; four
learning-rate/decay doubles), ``affine_`` (parameters: per-channel gamma then beta; two
alias tensors; mode), ``relu_`` and ``add_prev_`` (nothing), ``max_pool_2`` and
``avg_pool_2`` (size, stride, padding), ``fc_2`` (outputs, inputs, parameters as an
(inputs, outputs) matrix, two alias tensors, bias mode, four doubles),
``input_rgb_image_sized`` (mean red, green, blue; rows, columns), ``loss_metric_2``
(margin, distance threshold).

The network is ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``: a 150x150 RGB
chip, input scaled as ``(pixel - mean) / 256``; a 7x7/2 convolution to 32 channels,
affine, relu, 3x3/2 max-pool; residual levels of 3 x 32, 4 x 64, 3 x 128, 3 x 256 and
1 x 256 channels, the first block of each level after the first halving the size (a
3x3/2 convolution without padding, the shortcut a 2x2/2 average pool); a global average
pool and a 128 x 256 linear map without bias. dlib pads nothing when a stride is 2, so a
halving block's two branches can differ in size (8x8 gives 3x3 and 4x4); dlib adds such
tensors as if both were zero-extended to the larger size, and so does
:func:`_add_zero_extended`. Each ``affine`` (a frozen batch norm) follows a convolution
and is folded into it here.

Reading and converting the 22 MB file takes 0.1-0.5 s (the float payloads are read by
numpy in one step each); the converted state dict is cached under
``~/.cache/school-moderation/dlib-descriptor/`` (``$MODERATION_FACE_CACHE`` moves it),
named by the ``.dat`` file's sha256 and checked against a checksum in a sidecar
manifest, which brings a worker's load to about 0.04 s after its sha256 check of the
``.dat`` (another 0.04 s).

Exception tree::

    WeightFileError        (models.images.mtcnn) the file is missing, not the pinned one,
     +-- DlibFormatError   or not a dlib network of the expected shape
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.cache import CACHE_ROOT, cache_location, file_sha256
from models.images.mtcnn import WeightFileError, torch_threads

__all__ = [
    "CACHE_ENV",
    "CHIP_PADDING",
    "CHIP_SIZE",
    "DEFAULT_CACHE_DIR",
    "DlibFormatError",
    "DlibLayer",
    "DlibNetwork",
    "DlibResNet",
    "FaceDescriptor",
    "LayerSpec",
    "anet_chain",
    "default_cache_dir",
    "load_state_dict",
    "read_dlib_network",
    "state_dict_from_dlib",
]

CHIP_SIZE: Final = 150  # pixels: the side of the aligned face chip the network takes
CHIP_PADDING: Final = 0.25  # dlib's default padding around the face in a chip
CACHE_ENV: Final = "MODERATION_FACE_CACHE"
DEFAULT_CACHE_DIR: Final = CACHE_ROOT / "dlib-descriptor"
CACHE_FORMAT: Final = 1  # bump when the conversion or the module's parameter names change

_FLOAT_INF: Final = 32000  # float_details exponents that encode +inf, -inf and NaN
_FLOAT_NINF: Final = 32001
_FLOAT_NAN: Final = 32002


class DlibFormatError(WeightFileError):
    """The file is not a dlib network of the shape this module expects."""


# --- reading dlib's serialization format -------------------------------------------------


class _Reader:
    """A cursor over the bytes of a dlib-serialized object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise DlibFormatError(f"file ends at byte {len(self.data)}, wanted {end}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#04x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def boolean(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {char!r} at {self.pos - 1}")
        return char == b"1"

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent == _FLOAT_INF:
            return float("inf")
        if exponent == _FLOAT_NINF:
            return float("-inf")
        if exponent == _FLOAT_NAN:
            return float("nan")
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        return self._take(self.integer()).decode("ascii", errors="replace")

    def version(self, what: str, allowed: Sequence[int]) -> int:
        found = self.integer()
        if found not in allowed:
            raise DlibFormatError(f"{what} has version {found}, expected one of {list(allowed)}")
        return found

    def tag(self, what: str, expected: str) -> None:
        found = self.string()
        if found != expected:
            raise DlibFormatError(f"expected {what} {expected!r}, found {found!r}")

    def tensor(self) -> NDArray[np.float32]:
        self.version("tensor", (2,))
        shape = tuple(self.integer() for _ in range(4))  # num_samples, k, nr, nc
        if min(shape) < 0:
            raise DlibFormatError(f"tensor of negative size {shape} at {self.pos}")
        count = math.prod(shape)
        values = np.frombuffer(self._take(4 * count), dtype="<f4")
        return values.astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version("alias tensor", (1,))
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc


# --- the network ------------------------------------------------------------------------


class LayerSpec(NamedTuple):
    """One layer of a dlib network type, as its template is written.

    ``kind`` is dlib's name without the trailing underscore: con, affine, relu,
    max_pool, avg_pool, fc_no_bias, add_prev, tag, skip. ``size`` is the filter count of
    a con, the output count of an fc, the window side of a pool (0: the whole input),
    or the tag number of a tag, skip or add_prev (tagN marks its input's output, skipN
    continues from tagN's output, add_prevN adds tagN's output).
    """

    kind: str
    size: int = 0
    side: int = 0  # pixels: a con's filter side
    stride: int = 1

    @property
    def computational(self) -> bool:
        """Whether dlib wraps it in an ``add_layer`` (tags and skips are wrappers only)."""
        return self.kind not in ("tag", "skip")


def _block(filters: int, stride: int) -> list[LayerSpec]:
    """dlib's ``block``: ``BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,...>>>>>``."""
    return [
        LayerSpec("affine"),
        LayerSpec("con", filters, 3),
        LayerSpec("relu"),
        LayerSpec("affine"),
        LayerSpec("con", filters, 3, stride),
    ]


def _ares(filters: int) -> list[LayerSpec]:
    """``relu<add_prev1<block<N,affine,1,tag1<...>>>>``: an identity-shortcut block."""
    return [LayerSpec("relu"), LayerSpec("add_prev", 1), *_block(filters, 1), LayerSpec("tag", 1)]


def _ares_down(filters: int) -> list[LayerSpec]:
    """``relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<...>>>>>>>``."""
    return [
        LayerSpec("relu"),
        LayerSpec("add_prev", 2),
        LayerSpec("avg_pool", 2, stride=2),
        LayerSpec("skip", 1),
        LayerSpec("tag", 2),
        *_block(filters, 2),
        LayerSpec("tag", 1),
    ]


# (channels, blocks, whether the level's first block halves the size), input side first
LEVELS: Final = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
EMBEDDING_DIM: Final = 128


def anet_chain() -> list[LayerSpec]:
    """The layers of ``anet_type`` under its loss, top-down, as dlib serializes them."""
    chain = [LayerSpec("fc_no_bias", EMBEDDING_DIM), LayerSpec("avg_pool", 0)]
    for channels, blocks, halves in reversed(LEVELS):
        for i in reversed(range(blocks)):
            chain += _ares_down(channels) if halves and i == 0 else _ares(channels)
    chain += [
        LayerSpec("max_pool", 3, stride=2),
        LayerSpec("relu"),
        LayerSpec("affine"),
        LayerSpec("con", 32, 7, 2),
    ]
    return chain


@dataclass
class DlibLayer:
    """One computational layer as read from the file: its kind and its parameters."""

    kind: str  # "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"
    params: NDArray[np.float32] = field(repr=False)  # the layer's flat parameter tensor
    shape: dict[str, int] = field(default_factory=dict)  # sizes, strides, paddings


@dataclass
class DlibNetwork:
    """The parsed file: input normalisation and the layers bottom-up (input side first)."""

    mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]  # computational layers only (no tags or skips), input first
    margin: float  # loss_metric's training margin, kept for the record
    distance_threshold: float  # loss_metric's training distance threshold (0.6)


def _expect(layer: DlibLayer, **expected: int) -> None:
    for key, value in expected.items():
        if layer.shape.get(key) != value:
            raise DlibFormatError(
                f"{layer.kind} layer has {key}={layer.shape.get(key)}, expected {value}"
            )


def _read_details(reader: _Reader, spec: LayerSpec) -> DlibLayer:
    """One ``add_layer``'s layer details, checked against what ``spec`` says they are."""
    no_params = np.zeros(0, np.float32)
    if spec.kind == "con":
        reader.tag("layer", "con_4")
        params = reader.tensor()
        fields = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        layer = DlibLayer("con", params, {name: reader.integer() for name in fields})
        reader.alias_tensor()  # filters: (num_filters, k, nr, nc) at offset 0
        reader.alias_tensor()  # biases: (1, num_filters) after the filters
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.real()
        side, stride = spec.side, spec.stride
        padding = side // 2 if stride == 1 else 0  # dlib's default: none when striding
        _expect(layer, num_filters=spec.size, nr=side, nc=side, stride_y=stride, stride_x=stride)
        _expect(layer, padding_y=padding, padding_x=padding)
        return layer
    if spec.kind == "affine":
        reader.tag("layer", "affine_")
        params = reader.tensor()
        reader.alias_tensor()  # gamma
        reader.alias_tensor()  # beta
        layer = DlibLayer("affine", params, {"mode": reader.integer()})
        _expect(layer, mode=0)  # CONV_MODE: one gamma and one beta per channel
        return layer
    if spec.kind == "relu":
        reader.tag("layer", "relu_")
        return DlibLayer("relu", no_params)
    if spec.kind == "add_prev":
        reader.tag("layer", "add_prev_")  # which tag it adds is in the type, not the file
        return DlibLayer("add_prev", no_params, {"tag": spec.size})
    if spec.kind in ("max_pool", "avg_pool"):
        reader.tag("layer", f"{spec.kind}_2")
        names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        layer = DlibLayer(spec.kind, no_params, {name: reader.integer() for name in names})
        _expect(layer, nr=spec.size, nc=spec.size, stride_y=spec.stride, stride_x=spec.stride)
        _expect(layer, padding_y=0, padding_x=0)
        return layer
    if spec.kind == "fc_no_bias":
        reader.tag("layer", "fc_2")
        outputs, inputs = reader.integer(), reader.integer()
        params = reader.tensor()
        reader.alias_tensor()  # weights: (inputs, outputs)
        reader.alias_tensor()  # biases: empty
        layer = DlibLayer("fc", params, {"outputs": outputs, "inputs": inputs})
        layer.shape["bias_mode"] = reader.integer()
        for _ in range(4):
            reader.real()
        _expect(layer, outputs=spec.size, bias_mode=1)  # FC_NO_BIAS
        return layer
    raise DlibFormatError(f"no reader for dlib layer kind {spec.kind!r}")


def read_dlib_network(data: bytes, chain: Sequence[LayerSpec] | None = None) -> DlibNetwork:
    """Parse a serialized ``loss_metric`` network whose layers are ``chain`` (top-down,
    by default :func:`anet_chain`); raise :class:`DlibFormatError` on any mismatch."""
    chain = list(anet_chain() if chain is None else chain)
    reader = _Reader(data)
    reader.version("add_loss_layer", (1,))
    reader.tag("loss", "loss_metric_2")
    margin, distance_threshold = reader.real(), reader.real()

    computational = [spec for spec in chain if spec.computational]
    for spec in chain[:-1]:  # the bottom layer sits on the input: read below
        if spec.computational:
            reader.version("add_layer", (2,))  # 2 since dlib 19.2: with params_grad
        else:
            reader.version(f"{spec.kind} layer", (1,))

    # the bottom add_layer: version, input layer, its own details, training state
    bottom_version = reader.version("input add_layer", (2, 3))
    reader.tag("input layer", "input_rgb_image_sized")
    mean_rgb = (reader.real(), reader.real(), reader.real())
    input_size = (reader.integer(), reader.integer())
    if input_size != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"input is {input_size}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    layers = [_read_details(reader, computational[-1])]
    for _ in range(3):  # setup called, gradient input stale, output getters disabled
        reader.boolean()
    for _ in range(3):  # x_grad, cached_output, grad_final
        reader.tensor()
    if bottom_version >= 3:
        reader.integer()  # sample expansion factor

    for spec in reversed(computational[:-1]):
        layers.append(_read_details(reader, spec))
        for _ in range(3):
            reader.boolean()
        for _ in range(3):  # x_grad, cached_output, params_grad
            reader.tensor()
    if reader.pos != len(data):
        raise DlibFormatError(f"{len(data) - reader.pos} bytes left after the network")
    return DlibNetwork(mean_rgb, input_size, layers, margin, distance_threshold)


# --- the torch module -------------------------------------------------------------------


def _add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` as dlib's ``add_prev`` does it: each operand zero-extended (channels,
    rows, columns, at the far end) to the larger of the two sizes."""
    if a.shape == b.shape:
        return a + b
    size = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]

    def extend(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, size[2] - w, 0, size[1] - h, 0, size[0] - c))

    return extend(a) + extend(b)


class _Block(nn.Module):
    """A residual block (dlib's ``ares``), or with ``halves`` its ``ares_down``."""

    def __init__(self, in_channels: int, channels: int, halves: bool) -> None:
        super().__init__()
        stride, padding = (2, 0) if halves else (1, 1)
        self.halves = halves
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=padding)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.halves else x
        return F.relu(_add_zero_extended(y, shortcut))


class DlibResNet(nn.Module):
    """dlib's ``anet_type`` face descriptor network, each affine folded into its conv.

    Input: (N, 3, 150, 150) float RGB pixels 0-255 (aligned chips); output: (N, 128)
    descriptors, unnormalised, exactly as dlib's ``loss_metric`` returns them.
    """

    mean_rgb: torch.Tensor  # (1, 3, 1, 1): dlib's mean red, green and blue, subtracted

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.zeros(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        blocks: list[nn.Module] = []
        in_channels = 32
        for channels, count, halves in LEVELS:
            for i in range(count):
                blocks.append(_Block(in_channels, channels, halves and i == 0))
                in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, EMBEDDING_DIM, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels - self.mean_rgb) * (1.0 / 256.0)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        descriptors: torch.Tensor = self.fc(x.mean(dim=(2, 3)))  # avg_pool_everything, fc
        return descriptors


def _conv_names() -> Iterator[str]:
    """The names of :class:`DlibResNet`'s convolutions in dlib's bottom-up order."""
    yield "stem"
    for i in range(sum(count for _, count, _ in LEVELS)):
        yield f"blocks.{i}.conv1"
        yield f"blocks.{i}.conv2"


def state_dict_from_dlib(network: DlibNetwork) -> dict[str, torch.Tensor]:
    """The :class:`DlibResNet` state dict of a parsed network, affines folded in."""
    layers = network.layers
    state: dict[str, torch.Tensor] = {
        "mean_rgb": torch.tensor(network.mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1)
    }
    convs = [i for i, layer in enumerate(layers) if layer.kind == "con"]
    names = list(_conv_names())
    if len(convs) != len(names):
        raise DlibFormatError(f"{len(convs)} convolutions, expected {len(names)}")
    for name, i in zip(names, convs, strict=True):
        conv, affine = layers[i], layers[i + 1]
        if affine.kind != "affine":
            raise DlibFormatError(f"convolution {name} is not followed by an affine layer")
        filters = conv.shape["num_filters"]
        flat = conv.params.reshape(-1)
        weight = flat[: flat.size - filters].reshape(
            filters, -1, conv.shape["nr"], conv.shape["nc"]
        )
        bias = flat[flat.size - filters :]
        gamma_beta = affine.params.reshape(-1)
        if gamma_beta.size != 2 * filters:
            raise DlibFormatError(f"affine after {name} has {gamma_beta.size} values")
        gamma, beta = gamma_beta[:filters], gamma_beta[filters:]
        state[f"{name}.weight"] = torch.from_numpy(weight * gamma[:, None, None, None])
        state[f"{name}.bias"] = torch.from_numpy(bias * gamma + beta)
    fc = layers[-1]
    if fc.kind != "fc":
        raise DlibFormatError("the top layer is not fully connected")
    state["fc.weight"] = torch.from_numpy(
        np.ascontiguousarray(fc.params.reshape(fc.shape["inputs"], fc.shape["outputs"]).T)
    )
    return state


# --- the cache --------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$MODERATION_FACE_CACHE`` if set, else ``~/.cache/school-moderation/dlib-descriptor``."""
    return cache_location(CACHE_ENV, DEFAULT_CACHE_DIR)


def _manifest_path(cache_dir: Path, source_sha256: str) -> Path:
    return cache_dir / f"{source_sha256}.json"


def _weights_path(cache_dir: Path, source_sha256: str) -> Path:
    return cache_dir / f"{source_sha256}.safetensors"


def _read_cache(cache_dir: Path, source_sha256: str) -> dict[str, torch.Tensor] | None:
    """The cached state dict if its manifest matches and its checksum holds, else None."""
    try:
        manifest = json.loads(_manifest_path(cache_dir, source_sha256).read_text("utf-8"))
        weights = _weights_path(cache_dir, source_sha256)
        if (
            manifest.get("format") != CACHE_FORMAT
            or manifest.get("source_sha256") != source_sha256
            or manifest.get("sha256") != file_sha256(weights)
        ):
            return None
        state: dict[str, torch.Tensor] = load_file(weights)
        return state
    except (OSError, ValueError, AttributeError, SafetensorError):
        return None


def _replace_with(target: Path, write: Callable[[Path], object]) -> None:
    """Write ``target`` through a temporary sibling renamed into place."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    staging = Path(name)
    try:
        write(staging)
        staging.chmod(0o644)  # mkstemp makes it 0600; the cache may serve other users
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def _write_cache(cache_dir: Path, source_sha256: str, state: dict[str, torch.Tensor]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    weights = _weights_path(cache_dir, source_sha256)
    _replace_with(weights, lambda path: save_file(state, str(path)))
    manifest = {
        "format": CACHE_FORMAT,
        "source_sha256": source_sha256,
        "sha256": file_sha256(weights),
    }
    text = json.dumps(manifest, indent=2) + "\n"
    _replace_with(
        _manifest_path(cache_dir, source_sha256),
        lambda path: path.write_text(text, encoding="utf-8"),
    )


def load_state_dict(
    dat_path: Path, *, source_sha256: str | None = None, cache_dir: Path | None = None
) -> dict[str, torch.Tensor]:
    """The :class:`DlibResNet` state dict of the dlib file ``dat_path``, cached.

    A cache entry is ``<sha256 of the .dat>.safetensors`` with a ``.json`` manifest that
    holds the cache format and the safetensors file's own sha256. A missing, stale or
    corrupt entry is rebuilt from the ``.dat`` and written through temporary files
    renamed into place, so concurrent workers never read half a file; a cache that
    cannot be written (read-only home) is skipped. ``source_sha256`` saves hashing the
    ``.dat`` again when the caller has just checked it.
    """
    digest = source_sha256 or file_sha256(dat_path)
    folder = (cache_dir if cache_dir is not None else default_cache_dir()).expanduser()
    cached = _read_cache(folder, digest)
    if cached is not None:
        return cached
    state = state_dict_from_dlib(read_dlib_network(dat_path.read_bytes()))
    with contextlib.suppress(OSError):  # the cache only saves time: a read-only home
        _write_cache(folder, digest, state)
    return state


# --- the descriptor -----------------------------------------------------------------------


class FaceDescriptor:
    """dlib's face descriptor in torch: load once, :meth:`describe` batches of chips.

    ``dat_path`` is dlib's ``.dat`` file; with ``verify`` its sha256 must be
    ``expected_sha256``. ``num_threads`` torch threads run each batch (restored
    afterwards; ``None`` leaves torch's setting alone): on a two-core worker running two
    processes one thread each is right, and measured on the development machine a
    second thread made a batch slower, not faster. Chips come from dlib's
    ``get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)``, which is what
    dlib's ``compute_face_descriptor`` feeds its network with no jitter.
    """

    def __init__(
        self,
        dat_path: Path,
        *,
        expected_sha256: str | None = None,
        verify: bool = True,
        num_threads: int | None = 1,
        cache_dir: Path | None = None,
        batch_size: int = 16,
    ) -> None:
        if not dat_path.is_file():
            raise WeightFileError(f"dlib model file {dat_path} is missing")
        digest = file_sha256(dat_path)
        if verify and expected_sha256 is not None and digest != expected_sha256:
            raise WeightFileError(f"{dat_path} has sha256 {digest}, expected {expected_sha256}")
        self.num_threads = num_threads
        self.batch_size = batch_size
        self.net = DlibResNet()
        self.net.load_state_dict(
            load_state_dict(dat_path, source_sha256=digest, cache_dir=cache_dir)
        )
        self.net.eval()
        self.net.requires_grad_(False)
        # channels-last (the chips' own layout) spares oneDNN a reorder at every layer:
        # measured 5.6 ms of CPU per face in batches of 16 at one thread, against 6.7 ms
        # in torch's default layout (9.9 and 13.0 ms for a lone face)
        self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs

    def describe(self, chips: NDArray[np.uint8]) -> NDArray[np.float64]:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float64 descriptors."""
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected chips of shape (N, {CHIP_SIZE}, {CHIP_SIZE}, 3)")
        out = np.empty((len(chips), EMBEDDING_DIM), dtype=np.float64)
        if len(chips) == 0:
            return out
        with torch.inference_mode(), torch_threads(self.num_threads):
            for start in range(0, len(chips), self.batch_size):
                batch = chips[start : start + self.batch_size].astype(np.float32)
                # (N, H, W, 3) is channels-last already: the permuted view needs no copy
                pixels = torch.from_numpy(batch).permute(0, 3, 1, 2)
                out[start : start + len(batch)] = self.net(pixels).numpy()
        return out
