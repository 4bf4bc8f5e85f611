"""The "simple" DDPM UNet (Ho et al., 2020) as used by DDIM, SDEdit, DDNM and DeqIR's code.

This is the network of the CelebA-HQ-256 checkpoint ``celeba_hq.ckpt``.  Parameter names follow
the original ``state_dict`` so the file loads with ``strict=True``.

Notation (code name -> paper / config key)

    ch                   C            ``ch``, width of the first level
    ch_mult              (m_0, ...)   ``ch_mult``; level l has m_l * C channels and size H / 2^l
    num_res_blocks       N            ``num_res_blocks`` residual blocks per level (N + 1 on the way up)
    attn_resolutions     {res}        spatial sizes (e.g. 16) at which single-head self-attention is used
    resolution           H            ``resolution`` / ``image_size``, the training image size
    resamp_with_conv     -            resample with a 3x3 convolution (else avg-pool / plain nearest)
    temb                 e(t)         time embedding MLP(sinusoid(t)), width 4C
    out_ch               C_out        output channels (= C_in: eps only)

Shapes: ``forward(x (B, C_in, H, W), t (B,) float or long) -> (B, C_out, H, W)`` in the
parameters' dtype.  GroupNorm here uses eps = 1e-6 (ADM: 1e-5), as in the original code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GroupNorm32, as_timesteps, attention, check_network_input, timestep_embedding

__all__ = ["DDPMUNet"]

_KEYS = {
    "ch",
    "out_ch",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "dropout",
    "in_channels",
    "resolution",
    "image_size",
    "resamp_with_conv",
}
# keys of the DDIM/SDEdit config that describe data, training or the diffusion, not the network
_IGNORED = {
    "type",
    "var_type",
    "ema_rate",
    "ema",
    "channels",
    "beta_schedule",
    "beta_start",
    "beta_end",
    "num_diffusion_timesteps",
}


def _norm(channels: int) -> GroupNorm32:
    if channels % 32:
        raise ValueError(f"the DDPM UNet uses GroupNorm with 32 groups; widths must be multiples of 32, got {channels}")
    return GroupNorm32(32, channels, eps=1e-6)


class Upsample(nn.Module):
    """Nearest x2, then an optional 3x3 conv.  (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.with_conv else x


class Downsample(nn.Module):
    """3x3 stride-2 conv after padding one zero row/column at the bottom/right (TensorFlow "SAME"
    padding of the original DDPM), or 2x2 average pooling.  (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResnetBlock(nn.Module):
    """``h = conv1(swish(GN(x))) + Linear(swish(e))``; ``h = conv2(drop(swish(GN(h))))``; ``shortcut(x) + h``.

    x: (B, C_in, H, W), temb: (B, 4C) -> (B, C_out, H, W).  A 1x1 ``nin_shortcut`` matches widths.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.match = in_channels != out_channels

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if self.match else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels with 1x1 convs q, k, v: ``x + proj(Attn(q, k, v))``.
    (B, C, H, W) -> (B, C, H, W); scale 1 / sqrt(C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).reshape(b, 1, c, hgt * wid).transpose(-1, -2) for conv in (self.q, self.k, self.v))
        a = attention(q, k, v)  # (B, 1, T, C)
        return x + self.proj_out(a.transpose(-1, -2).reshape(b, c, hgt, wid))


class _StageMaker:
    """Makes the encoder and decoder stages of one ``DDPMUNet`` (the DDIM code's order and names)."""

    def __init__(
        self,
        ch: int,
        mult: tuple[int, ...],
        num_res_blocks: int,
        attn_res: set[int],
        dropout: float,
        resamp_with_conv: bool,
    ) -> None:
        self.ch, self.mult, self.num_res_blocks, self.attn_res = ch, mult, num_res_blocks, attn_res
        self.dropout, self.resamp_with_conv, self.temb_ch = dropout, resamp_with_conv, 4 * ch
        self.in_mult = (1,) + mult

    def encoder(self, resolution: int) -> tuple[nn.ModuleList, int, int]:
        """``down``: N blocks per level, then halve the size; returns it, the width and the resolution reached."""
        ch, mult = self.ch, self.mult
        res, block_in = resolution, ch
        down = nn.ModuleList()
        for level, m in enumerate(mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_in = ch * self.in_mult[level]
            for _ in range(self.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, ch * m, self.temb_ch, self.dropout))
                block_in = ch * m
                if res in self.attn_res:
                    stage.attn.append(AttnBlock(block_in))
            if level != len(mult) - 1:
                stage.downsample = Downsample(block_in, self.resamp_with_conv)
                res //= 2
            down.append(stage)
        return down, block_in, res

    def decoder(self, block_in: int, res: int) -> tuple[nn.ModuleList, int]:
        """``up``: N + 1 blocks per level (each takes a skip), then double the size; returns it and the width."""
        ch, mult = self.ch, self.mult
        up_stages: list[nn.Module] = []
        for level in reversed(range(len(mult))):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            for i in range(self.num_res_blocks + 1):
                skip_in = ch * (self.in_mult[level] if i == self.num_res_blocks else mult[level])
                stage.block.append(ResnetBlock(block_in + skip_in, ch * mult[level], self.temb_ch, self.dropout))
                block_in = ch * mult[level]
                if res in self.attn_res:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in, self.resamp_with_conv)
                res *= 2
            up_stages.insert(0, stage)  # up[level] is the decoder stage of that level
        return nn.ModuleList(up_stages), block_in


class DDPMUNet(nn.Module):
    """The DDIM/SDEdit ``Model`` ("simple" DDPM UNet), written from the paper and the config keys."""

    def __init__(
        self,
        ch: int = 128,
        out_ch: int = 3,
        ch_mult: Iterable[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Iterable[int] = (16,),
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        in_channels: int = 3,
        resolution: int = 256,
    ) -> None:
        super().__init__()
        mult = tuple(int(m) for m in ch_mult)
        self.ch, self.in_channels, self.out_channels, self.resolution = ch, in_channels, out_ch, resolution
        self.num_res_blocks, self.downsample_factor = num_res_blocks, 2 ** (len(mult) - 1)
        stages = _StageMaker(ch, mult, num_res_blocks, {int(r) for r in attn_resolutions}, dropout, resamp_with_conv)
        temb_ch = stages.temb_ch
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down, block_in, res = stages.encoder(resolution)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, temb_ch, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, temb_ch, dropout)
        self.up, block_in = stages.decoder(block_in, res)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | float) -> torch.Tensor:
        """x: (B, C_in, H, W), t: (B,) float or long -> (B, C_out, H, W) in the parameters' dtype."""
        check_network_input(x, self.in_channels, self.downsample_factor, "DDPMUNet")
        t = as_timesteps(t, x.shape[0], x.device)
        emb = timestep_embedding(t, self.ch, shift=1, sin_first=True).to(self.temb.dense[0].weight.dtype)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](emb)))  # e(t): (B, 4C)

        hs = [self.conv_in(x.to(self.dtype))]
        for level, stage in enumerate(self.down):
            for i, block in enumerate(stage.block):
                h = block(hs[-1], temb)
                hs.append(stage.attn[i](h) if len(stage.attn) else h)
            if level != len(self.down) - 1:
                hs.append(stage.downsample(hs[-1]))

        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)

        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for i, block in enumerate(stage.block):  # concatenate the matching encoder activation
                h = block(torch.cat([h, hs.pop().to(h.dtype)], dim=1), temb)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if level != 0:
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DDPMUNet:
        """Build from the DDIM/SDEdit ``model`` config (``ch``, ``ch_mult``, ``attn_resolutions``, ...).

        ``resolution`` may be given as ``image_size`` (the ``data`` section's name); ``out_ch`` defaults
        to ``in_channels``.  Data / diffusion keys (``var_type``, ``ema``, ``beta_start``, ...) are ignored.
        """
        unknown = set(cfg) - _KEYS - _IGNORED
        if unknown:
            raise ValueError(f"unknown DDPM config keys {sorted(unknown)}; known: {sorted(_KEYS)}")
        if cfg.get("type", "simple") != "simple":
            raise ValueError(f"only the 'simple' DDPM model type is supported, got type={cfg['type']!r}")
        if "resolution" not in cfg and "image_size" not in cfg:
            raise ValueError("the DDPM config needs 'resolution' (or 'image_size') to place the attention layers")
        in_ch = int(cfg.get("in_channels", 3))
        return cls(
            ch=int(cfg.get("ch", 128)),
            out_ch=int(cfg.get("out_ch", in_ch)),
            ch_mult=cfg.get("ch_mult", (1, 2, 2, 2)),
            num_res_blocks=int(cfg.get("num_res_blocks", 2)),
            attn_resolutions=cfg.get("attn_resolutions", (16,)),
            dropout=float(cfg.get("dropout", 0.0)),
            resamp_with_conv=bool(cfg.get("resamp_with_conv", True)),
            in_channels=in_ch,
            resolution=int(cfg.get("resolution", cfg.get("image_size"))),
        )
