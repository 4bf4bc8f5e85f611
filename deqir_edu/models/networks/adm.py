"""ADM: the UNet of "Diffusion Models Beat GANs" (Dhariwal & Nichol, 2021), guided-diffusion flags.

This is the network of OpenAI's ImageNet-256 checkpoint and of RePaint's CelebA-HQ-256 checkpoint.
Parameter names follow the original ``state_dict`` so those files load with ``strict=True``.

Notation (code name -> paper / guided-diffusion flag)

    model_channels       C            ``num_channels``, width of the first level
    channel_mult         (m_0, ...)   ``channel_mult``; level l has m_l * C channels and size H / 2^l
    num_res_blocks       N            ``num_res_blocks`` residual blocks per level (N + 1 on the way up)
    attention_rates      {ds}         levels with self-attention, as downsampling rates ds = H / res;
                                      ``from_config`` turns ``attention_resolutions="32,16,8"`` into them
    num_heads, head_ch   h, d_h       attention heads; ``num_head_channels`` d_h > 0 overrides h = C_l / d_h
    emb                  e(t)         time embedding MLP(sinusoid(t)), width 4C
    scale, shift         (s, b)       AdaGN of ``use_scale_shift_norm``: GN(h) * (1 + s) + b
    resblock_updown      -            resample inside residual blocks instead of separate conv layers
    out_channels         2 C_in or C_in  ``learn_sigma``: eps (first C_in channels) and the variance
                                      interpolation v (last C_in channels)
    norm_groups          G            GroupNorm groups; 32 in ADM.  Not a guided-diffusion flag: the
                                      embedded colour model uses 8, because with one channel per group
                                      the last GN (width C = 32) deletes each channel's spatial mean and
                                      the net cannot pass the DC of x_t on to eps (a colour cast of x_{0|t})

Shapes: ``forward(x (B, C_in, H, W), t (B,)) -> (B, out_channels, H, W)``, in the parameters' dtype.
Precision: ``use_fp16`` and ``use_checkpoint`` are training flags and are ignored; for half precision
cast the whole module, ``net.to(torch.float16)`` or ``torch.bfloat16`` (GroupNorm stays float32 inside).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GroupNorm32, as_timesteps, attention, check_network_input, timestep_embedding

__all__ = ["ADMConfig", "ADMUNet"]

# guided-diffusion's ``model_and_diffusion_defaults()`` for the model flags
_DEFAULTS: dict[str, Any] = dict(
    image_size=64,
    in_channels=3,
    num_channels=128,
    num_res_blocks=2,
    channel_mult="",
    learn_sigma=False,
    class_cond=False,
    use_checkpoint=False,
    attention_resolutions="16,8",
    num_heads=4,
    num_head_channels=-1,
    num_heads_upsample=-1,
    use_scale_shift_norm=True,
    dropout=0.0,
    resblock_updown=False,
    use_fp16=False,
    use_new_attention_order=False,
    out_channels=None,
    norm_groups=32,
)
# flags of the diffusion process (not of the network): accepted and ignored by ``from_config``
_DIFFUSION_FLAGS = {
    "diffusion_steps",
    "noise_schedule",
    "timestep_respacing",
    "use_kl",
    "predict_xstart",
    "rescale_timesteps",
    "rescale_learned_sigmas",
    "sigma_small",
}
_DEFAULT_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def _norm(channels: int, groups: int = 32) -> GroupNorm32:
    if channels % 32:
        raise ValueError(f"ADM uses GroupNorm with 32 groups, so every width must be a multiple of 32; got {channels}")
    return GroupNorm32(groups, channels)


class Resample(nn.Module):
    """Nearest x2 upsampling (+ 3x3 conv ``conv``) or x1/2 downsampling (3x3 stride-2 conv ``op`` or
    2x2 average pooling).  (B, C, H, W) -> (B, C_out, 2H, 2W) or (B, C_out, H/2, W/2)."""

    def __init__(self, channels: int, up: bool, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.up = up
        if use_conv:  # attribute names as in guided-diffusion: Upsample.conv, Downsample.op
            conv = nn.Conv2d(channels, out_channels, 3, stride=1 if up else 2, padding=1)
            setattr(self, "conv" if up else "op", conv)
        elif out_channels != channels:
            raise ValueError("resampling without a convolution cannot change the number of channels")
        self.use_conv = use_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if self.use_conv else x
        return self.op(x) if self.use_conv else F.avg_pool2d(x, kernel_size=2, stride=2)


class ResBlock(nn.Module):
    """Residual block with time conditioning (AdaGN when ``scale_shift``), optionally resampling.

    ``h = conv(SiLU(GN(x)))``; ``h = GN(h) (1 + s) + b`` with ``(s, b) = Linear(SiLU(e))``
    (or ``GN(h + Linear(SiLU(e)))``); ``h = conv(Dropout(SiLU(h)))``; return ``skip(x) + h``.
    x: (B, C, H, W), emb: (B, 4C_model) -> (B, C_out, H', W').
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        scale_shift: bool = False,
        up: bool = False,
        down: bool = False,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            _norm(channels, norm_groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if self.updown:  # parameter-free resampling of both branches
            self.h_upd = Resample(channels, up=up, use_conv=False)
            self.x_upd = Resample(channels, up=up, use_conv=False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels)
        )
        self.out_layers = nn.Sequential(
            _norm(out_channels, norm_groups),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:  # resample between the norm/activation and the first conv
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]  # (B, C_out or 2 C_out, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift  # AdaGN
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels: ``x + proj(Attn(qkv(GN(x))))``, (B, C, H, W) -> same.

    The 1x1 ``qkv`` conv packs channels as [head][q, k, v][d_h] (guided-diffusion's legacy order) or,
    with ``new_order``, as [q, k, v][head][d_h].
    """

    def __init__(
        self, channels: int, num_heads: int = 1, head_channels: int = -1, new_order: bool = False, norm_groups: int = 32
    ) -> None:
        super().__init__()
        if head_channels != -1:
            if channels % head_channels:
                raise ValueError(f"{channels} channels are not divisible by num_head_channels={head_channels}")
            num_heads = channels // head_channels
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into num_heads={num_heads} heads")
        self.num_heads, self.new_order = num_heads, new_order
        self.norm = _norm(channels, norm_groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        x = x.reshape(b, c, hgt * wid)  # (B, C, T)
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        d = c // self.num_heads
        if self.new_order:
            qkv = qkv.reshape(b, 3, self.num_heads, d, -1).transpose(0, 1)  # (3, B, h, d_h, T)
        else:
            qkv = qkv.reshape(b, self.num_heads, 3, d, -1).permute(2, 0, 1, 3, 4)  # (3, B, h, d_h, T)
        q, k, v = (z.transpose(-1, -2) for z in qkv)  # (B, h, T, d_h)
        a = attention(q, k, v).transpose(-1, -2).reshape(b, c, -1)  # (B, C, T), heads concatenated
        return (x + self.proj_out(a)).reshape(b, c, hgt, wid)


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands the time embedding to the residual blocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


@dataclass(frozen=True)
class ADMConfig:
    """The architecture of an ``ADMUNet`` (guided-diffusion names; ``ADMUNet.from_config`` reads its flags)."""

    in_channels: int = 3
    model_channels: int = 128
    out_channels: int = 3
    num_res_blocks: int = 2
    attention_rates: tuple[int, ...] = (2, 4)
    channel_mult: tuple[float, ...] = (1, 2, 4, 8)
    dropout: float = 0.0
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    conv_resample: bool = True
    image_size: int | None = None
    norm_groups: int = 32


class _BlockMaker:
    """Makes the blocks of one ``ADMUNet`` from its ``ADMConfig`` (guided-diffusion's order and names)."""

    def __init__(self, cfg: ADMConfig) -> None:
        self.cfg = cfg
        self.mult = tuple(cfg.channel_mult)
        self.rates = set(int(r) for r in cfg.attention_rates)
        self.heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
        self.emb_ch = 4 * cfg.model_channels

    def res(self, cin: int, cout: int, up: bool = False, down: bool = False) -> ResBlock:
        """A residual block from ``cin`` to ``cout`` channels, resampling when ``up`` or ``down``."""
        c = self.cfg
        return ResBlock(
            cin, self.emb_ch, c.dropout, cout, c.use_scale_shift_norm, up=up, down=down, norm_groups=c.norm_groups
        )

    def attn(self, ch: int, heads: int) -> AttentionBlock:
        """A self-attention block on ``ch`` channels."""
        c = self.cfg
        return AttentionBlock(ch, heads, c.num_head_channels, c.use_new_attention_order, c.norm_groups)

    def encoder(self) -> tuple[nn.ModuleList, list[int], int, int]:
        """Input blocks: N per level, then halve the size; returns them, the skip widths, the width and the rate."""
        c, mult = self.cfg, self.mult
        ch = int(mult[0] * c.model_channels)
        blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(c.in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1  # widths of the skip connections, current downsampling rate
        for level, m in enumerate(mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [self.res(ch, int(m * c.model_channels))]
                ch = int(m * c.model_channels)
                if ds in self.rates:
                    layers.append(self.attn(ch, c.num_heads))
                blocks.append(EmbedSequential(*layers))
                skips.append(ch)
            if level != len(mult) - 1:
                down = (
                    self.res(ch, ch, down=True)
                    if c.resblock_updown
                    else Resample(ch, up=False, use_conv=c.conv_resample)
                )
                blocks.append(EmbedSequential(down))
                skips.append(ch)
                ds *= 2
        return blocks, skips, ch, ds

    def decoder(self, ch: int, skips: list[int], ds: int) -> tuple[nn.ModuleList, int]:
        """Output blocks: N + 1 per level (each takes a skip), then double the size; returns them and the width."""
        c = self.cfg
        blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(self.mult))):
            for i in range(c.num_res_blocks + 1):
                layers: list[nn.Module] = [self.res(ch + skips.pop(), int(m * c.model_channels))]
                ch = int(m * c.model_channels)
                if ds in self.rates:
                    layers.append(self.attn(ch, self.heads_up))
                if level and i == c.num_res_blocks:
                    layers.append(
                        self.res(ch, ch, up=True) if c.resblock_updown else Resample(ch, True, c.conv_resample)
                    )
                    ds //= 2
                blocks.append(EmbedSequential(*layers))
        return blocks, ch


class ADMUNet(nn.Module):
    """The guided-diffusion ``UNetModel`` (unconditional), written from the paper and the config flags.

    ``ADMUNet(ADMConfig(...))`` or ``ADMUNet(in_channels=1, ...)`` (fields of ``ADMConfig``).
    """

    def __init__(self, config: ADMConfig | None = None, **fields: Any) -> None:
        super().__init__()
        try:
            cfg = replace(config or ADMConfig(), **fields)
        except TypeError as err:
            raise ValueError(f"unknown ADMUNet field: {err}") from None
        if cfg.norm_groups < 1 or 32 % cfg.norm_groups:
            raise ValueError(f"norm_groups must divide 32 (widths are multiples of 32), got {cfg.norm_groups}")
        blocks = _BlockMaker(cfg)
        self.in_channels, self.out_channels, self.image_size = cfg.in_channels, cfg.out_channels, cfg.image_size
        self.downsample_factor = 2 ** (len(blocks.mult) - 1)
        emb_ch = blocks.emb_ch
        self.time_embed = nn.Sequential(nn.Linear(cfg.model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.input_blocks, skips, ch, ds = blocks.encoder()
        self.middle_block = EmbedSequential(blocks.res(ch, ch), blocks.attn(ch, cfg.num_heads), blocks.res(ch, ch))
        self.output_blocks, ch = blocks.decoder(ch, skips, ds)
        self.out = nn.Sequential(_norm(ch, cfg.norm_groups), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        self.model_channels = cfg.model_channels

    @property
    def dtype(self) -> torch.dtype:
        return self.input_blocks[0][0].weight.dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | float) -> torch.Tensor:
        """x: (B, C_in, H, W), t: (B,) long or float -> (B, out_channels, H, W) in the parameters' dtype."""
        check_network_input(x, self.in_channels, self.downsample_factor, "ADMUNet")
        t = as_timesteps(t, x.shape[0], x.device)
        emb_in = timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype)
        emb = self.time_embed(emb_in)  # e(t): (B, 4C)
        h = x.to(self.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:  # concatenate the matching encoder activation
            h = block(torch.cat([h, skips.pop().to(h.dtype)], dim=1), emb)
        return self.out(h)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ADMUNet:
        """Build from guided-diffusion flags (``model_and_diffusion_defaults()`` names).

        ``channel_mult`` is a tuple, a string ``"1,2,2"`` or ``""`` (default for ``image_size``);
        ``attention_resolutions`` is a string ``"32,16,8"`` or a sequence of RESOLUTIONS, turned into
        downsampling rates ``image_size // res``.  Diffusion flags (``diffusion_steps``, ...) are ignored.
        """
        unknown = set(cfg) - set(_DEFAULTS) - _DIFFUSION_FLAGS
        if unknown:
            raise ValueError(f"unknown ADM config keys {sorted(unknown)}; known: {sorted(_DEFAULTS)}")
        c = {**_DEFAULTS, **cfg}
        if c["class_cond"]:
            raise ValueError(
                "class_cond=True (class-conditional ADM) is not supported; use an unconditional checkpoint"
            )
        size = int(c["image_size"])
        mult: Any = c["channel_mult"]
        if mult in ("", None):
            if size not in _DEFAULT_MULT:
                raise ValueError(f"no default channel_mult for image_size={size}; pass channel_mult, e.g. '1,2,2'")
            mult = _DEFAULT_MULT[size]
        elif isinstance(mult, str):
            mult = tuple(float(m) if "." in m else int(m) for m in mult.split(","))
        res = c["attention_resolutions"]
        res = [int(r) for r in res.split(",") if r.strip()] if isinstance(res, str) else [int(r) for r in res]
        for r in res:
            if r <= 0 or size % r:
                raise ValueError(f"attention resolution {r} does not divide image_size={size}")
        in_ch = int(c["in_channels"])
        out_ch = c["out_channels"] or (2 * in_ch if c["learn_sigma"] else in_ch)
        return cls(
            in_channels=in_ch,
            model_channels=int(c["num_channels"]),
            out_channels=int(out_ch),
            num_res_blocks=int(c["num_res_blocks"]),
            attention_rates=[size // r for r in res],
            channel_mult=mult,
            dropout=float(c["dropout"]),
            num_heads=int(c["num_heads"]),
            num_head_channels=int(c["num_head_channels"]),
            num_heads_upsample=int(c["num_heads_upsample"]),
            use_scale_shift_norm=bool(c["use_scale_shift_norm"]),
            resblock_updown=bool(c["resblock_updown"]),
            use_new_attention_order=bool(c["use_new_attention_order"]),
            image_size=size,
            norm_groups=int(c["norm_groups"]),
        )
