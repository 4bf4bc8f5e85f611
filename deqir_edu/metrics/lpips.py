r"""LPIPS, the learned perceptual distance of Zhang et al. (CVPR 2018), AlexNet variant (the DeqIR paper's metric).

Two images are compared through the activations of a frozen AlexNet: at each of 5 layers, every
pixel's channel vector is scaled to unit length, the squared differences are weighted per channel by
a learned non-negative head, averaged over space, and summed over layers.  The code is ours and
imports neither ``torchvision`` nor ``lpips``; only their *weights* are used, as data:

- backbone: torchvision's ImageNet AlexNet, ``alexnet-owt-7be5be79.pth``, looked up in the torch hub
  cache, then in the deqir-edu cache, then downloaded (sha256-checked; ``deqir-edu download lpips-alex``);
- heads: ``lpips/weights/v0.1/alex.pth`` inside the installed ``lpips`` wheel (``pip install --no-deps lpips``).

Notation (code name -> symbol of Zhang et al. 2018, Eq. (1)):

==================  ======================================================================
``x, y``            the two images :math:`x, x_0`, ``(B, 3, H, W)`` in [-1, 1] (grey ``(B, 1, H, W)`` is repeated to 3)
``shift, scale``    input scaling layer: ``(x - shift) / scale`` per RGB channel
``feats[l]``        :math:`y^l`, AlexNet activations after ReLU ``l = 0..4``, ``(B, C_l, H_l, W_l)``
``_unit(f)``        :math:`\hat y^l_{hw}`: each channel vector divided by its L2 norm over channels
``heads[l]``        :math:`w_l \in \mathbb{R}^{C_l}_{\ge 0}`, a 1x1 convolution from ``C_l`` to 1, no bias
==================  ======================================================================

.. math::

    d(x, x_0) = \sum_{l=0}^{4} \frac{1}{H_l W_l} \sum_{h,w} \sum_{c=1}^{C_l}
                w_{l,c} \, \big(\hat y^l_{c,hw} - \hat y^l_{0,c,hw}\big)^2

The paper writes the summand as :math:`\| w_l \odot (\hat y^l_{hw} - \hat y^l_{0,hw}) \|_2^2`; the released
heads (and this code) hold the squared weights, i.e. :math:`w_{l,c}` above is the paper's :math:`w_{l,c}^2`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..core.checks import check_image
from ..core.download import DownloadError, cache_dir, download, file_sha256, sidecar_path

__all__ = [
    "LPIPS",
    "lpips",
    "lpips_available",
    "backbone_path",
    "heads_path",
    "download_backbone",
    "BACKBONE_FILE",
    "BACKBONE_URL",
    "BACKBONE_SHA256_PREFIX",
    "MIN_SIZE",
]

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_URL = "https://download.pytorch.org/models/" + BACKBONE_FILE
BACKBONE_SHA256_PREFIX = "7be5be79"  # torchvision names its files after the first 8 hex digits of the sha256
CHANNELS = (64, 192, 384, 256, 256)  # C_l of the 5 tapped layers
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS input scaling layer (constants of the lpips package)
SCALE = (0.458, 0.448, 0.450)
MIN_SIZE = 31  # smallest H, W for which both 3x3 max-pools of AlexNet still have an input of >= 3 pixels
EPS = 1e-10  # guards the division in _unit for an all-zero channel vector

_DOWNLOAD_HINT = "`deqir-edu download lpips-alex`"


# ----------------------------------------------------------------------------- weight files
def _cache_dir() -> Path:
    """The deqir-edu download cache (``$DEQIR_EDU_CACHE`` or the platform cache dir)."""
    return Path(cache_dir())


def _backbone_candidates() -> list[Path]:
    return [Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILE, _cache_dir() / BACKBONE_FILE]


def backbone_path() -> Path | None:
    """The AlexNet weight file if present in the torch hub cache or the deqir-edu cache, else ``None``."""
    return next((p for p in _backbone_candidates() if p.is_file()), None)


def heads_path() -> Path:
    """``lpips/weights/v0.1/alex.pth`` of the installed ``lpips`` wheel, found without importing ``lpips``
    (importing it imports torchvision).  Raises ``FileNotFoundError`` naming the install command."""
    spec = importlib.util.find_spec("lpips")  # for a top-level name this does not run the package
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "weights" / "v0.1" / "alex.pth"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the LPIPS linear heads (lpips/weights/v0.1/alex.pth) were not found: the `lpips` package is not "
        "installed; install its data with `pip install --no-deps lpips` (deqir-edu never imports it)"
    )


def download_backbone(dest: Path | None = None) -> Path:
    """Download the AlexNet weights to ``dest`` (default: the deqir-edu cache, unless a cache already holds
    them) and check that their sha256 starts with ``BACKBONE_SHA256_PREFIX``.  Raises ``ValueError`` for a
    corrupt file (which is deleted) and ``deqir_edu.core.DownloadError`` when offline."""
    if dest is None and backbone_path() is not None:  # already in the hub cache or ours
        return backbone_path()
    dest = Path(dest) if dest is not None else _cache_dir() / BACKBONE_FILE
    download(BACKBONE_URL, dest)  # atomic: streams to a temporary file, renames when complete
    digest = file_sha256(dest)
    if not digest.startswith(BACKBONE_SHA256_PREFIX):
        dest.unlink()
        sidecar_path(dest).unlink(missing_ok=True)
        raise ValueError(
            f"corrupt download of {BACKBONE_URL}: sha256 {digest[:16]}... does not start with "
            f"{BACKBONE_SHA256_PREFIX}; the file was deleted; run {_DOWNLOAD_HINT} again"
        )
    return dest


def _find_or_download_backbone() -> Path:
    found = backbone_path()
    if found is not None:
        return found
    try:
        return download_backbone()
    except DownloadError as err:  # offline, DNS failure, refused connection, HTTP error...
        places = " or ".join(str(p) for p in _backbone_candidates())
        raise FileNotFoundError(
            f"LPIPS needs the AlexNet weights {BACKBONE_FILE}, which are not cached and could not be "
            f"downloaded from {BACKBONE_URL}. Run {_DOWNLOAD_HINT} on a machine with internet, "
            f"or place the file at {places}. ({err})"
        ) from err


def lpips_available() -> tuple[bool, str]:
    """``(True, where)`` if both weight files are on disk, else ``(False, reason)``.  Never downloads,
    so an evaluation can print "n/a (no weights)" instead of a silent zero."""
    try:
        heads = heads_path()
    except FileNotFoundError as err:
        return False, str(err)
    backbone = backbone_path()
    if backbone is None:
        places = " or ".join(str(p) for p in _backbone_candidates())
        return False, f"no AlexNet weights ({BACKBONE_FILE}); run {_DOWNLOAD_HINT} or place it at {places}"
    return True, f"backbone {backbone}, heads {heads}"


def _load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- the network
def alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional part, laid out as torchvision's ``alexnet().features`` (indices 0..12),
    so that its state-dict keys ``0.weight``, ``3.weight``, ``6.weight``, ``8.weight``, ``10.weight``
    (and biases) and shapes match torchvision's ``features.*``."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),  # 0, 1  -> tap 0
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),  # 3, 4  -> tap 1
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),  # 6, 7  -> tap 2
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),  # 8, 9  -> tap 3
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),  # 10, 11 -> tap 4
        nn.MaxPool2d(kernel_size=3, stride=2),  # 12 (unused by LPIPS)
    )


TAPS = (1, 4, 7, 9, 11)  # indices of the 5 ReLUs whose outputs LPIPS compares


def _unit(f: torch.Tensor) -> torch.Tensor:
    """Divide each channel vector ``f[b, :, h, w]`` by its L2 norm over channels."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)


class LPIPS(nn.Module):
    """LPIPS distance with the AlexNet backbone; all parameters are frozen (gradients flow to the inputs).

    Args:
        backbone_weights: ``None`` or ``"auto"``: hub cache, deqir-edu cache, else download; or a path to
            ``alexnet-owt-7be5be79.pth`` (keys ``features.*``; ``classifier.*`` keys are dropped).
        heads: ``"auto"``: from the installed ``lpips`` wheel; a path to such a file; ``None``: random
            non-negative heads (tests only).
        pretrained_backbone: ``False`` keeps a randomly initialised backbone (tests only).
        seed: seed of the random initialisation of whatever is not loaded.
    """

    def __init__(
        self,
        backbone_weights: str | Path | None = None,
        heads: str | Path | None = "auto",
        pretrained_backbone: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self._random_init(seed)
        if pretrained_backbone:
            auto = backbone_weights is None or backbone_weights == "auto"
            self.load_backbone(_find_or_download_backbone() if auto else Path(backbone_weights))
        if heads is not None:
            self.load_heads(heads_path() if heads == "auto" else Path(heads))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def random(cls, seed: int = 0, heads: str | Path | None = None) -> LPIPS:
        """Random backbone (no file needed) with random heads (``None``) or real ones (``"auto"``/path)."""
        return cls(heads=heads, pretrained_backbone=False, seed=seed)

    def _random_init(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in self.features:
                if isinstance(conv, nn.Conv2d):  # He initialisation keeps activations O(1) through ReLUs
                    fan_in = conv.weight[0].numel()
                    conv.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=g)
                    conv.bias.normal_(0.0, 0.1, generator=g)
            for head in self.heads:
                head.weight.uniform_(0.0, 1.0, generator=g)

    def load_backbone(self, path: str | Path) -> None:
        """Load torchvision's AlexNet file (or any state dict with the same ``features.*`` keys)."""
        state = {
            k.removeprefix("features."): v for k, v in _load(Path(path)).items() if not k.startswith("classifier.")
        }
        _load_checked(self.features, state, Path(path), "AlexNet backbone (keys features.0/3/6/8/10.weight/bias)")

    def load_heads(self, path: str | Path) -> None:
        """Load the linear heads saved by the lpips package (keys ``lin{l}.model.1.weight``)."""
        state = {k.replace("lin", "", 1).replace(".model.1", ""): v for k, v in _load(Path(path)).items()}
        _load_checked(self.heads, state, Path(path), "LPIPS heads (keys lin0..lin4.model.1.weight)")

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Scaled input ``(B, 3, H, W)`` -> the 5 tapped activations ``(B, C_l, H_l, W_l)``."""
        feats = []
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances ``(B,)`` between images ``x, y`` of shape ``(B, 3, H, W)`` (or grey ``(B, 1, H, W)``,
        repeated to 3 channels) with values in [-1, 1] and ``H, W >= 31``."""
        x, y = _prepare(x, "x"), _prepare(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        fx = self.layer_features((x - self.shift) / self.scale)  # input scaling layer
        fy = self.layer_features((y - self.shift) / self.scale)
        d = x.new_zeros(x.shape[0])
        for head, a, b in zip(self.heads, fx, fy, strict=True):
            diff2 = (_unit(a) - _unit(b)).pow(2)  # (B, C_l, H_l, W_l)
            d = d + head(diff2).mean(dim=(1, 2, 3))  # sum_c w_lc * diff2, then mean over (h, w); Eq. (1)
        return d


def _prepare(x: torch.Tensor, name: str) -> torch.Tensor:
    check_image(x, name=name)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} has {x.shape[1]} channels; LPIPS takes RGB (3) or grey (1) images")
    if min(x.shape[2:]) < MIN_SIZE:
        raise ValueError(
            f"{name} has size {tuple(x.shape[2:])}; AlexNet-LPIPS needs H, W >= {MIN_SIZE}: "
            "upsample both images first (e.g. F.interpolate(x, scale_factor=2))"
        )
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _load_checked(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} is not a valid {what} file: missing keys {missing}, unexpected keys "
            f"{unexpected}, wrong shapes {wrong}; run {_DOWNLOAD_HINT} or pass the right file"
        )
    module.load_state_dict(state)


_CACHE: dict[str, LPIPS] = {}


def lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS distances ``(B,)`` with the real weights; the model is built once and kept (moved to the
    device and dtype of ``x``).  Raises ``FileNotFoundError`` when weights are missing: see ``lpips_available``."""
    if "model" not in _CACHE:
        _CACHE["model"] = LPIPS()
    model = _CACHE["model"]
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        model.to(device=x.device, dtype=x.dtype)
    return model(x, y)
