"""DINOv2 features for FD-DINOv2 (Stein et al. 2023), from a local weights file, with torch-fidelity's preprocessing.

torch-fidelity's `dinov2-vit-*-14` extractors build the network with `torch.hub.load("facebookresearch/dinov2")`,
which needs the network for the code as well as the weights, and refuse a local weights path. genlab's extractor
keeps torch-fidelity's forward (TF1-style bilinear resize to 224 x 224, ImageNet normalisation, the CLS token after
the final norm) and builds the same ViT with timm instead, from the official `dinov2_vit*14_pretrain.pth` file
(torch hub's cache file, downloaded when online) or any local copy, so it works offline too.

The architecture is read from the weights (width, depth, patch size, SwiGLU for ViT-g): the file decides it, and
tests use tiny random ones. The hub model resizes its 37 x 37 position embeddings to the 16 x 16 patch grid of a
224 x 224 input at every call (bicubic, scale factor (16 + 0.1) / 37, no antialiasing); genlab does that once when
it loads the weights, in the same way, so the features are the hub model's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2
from torch_fidelity.helpers import text_to_dtype
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from genlab.errors import GenlabError

DINOV2_NAME = "genlab-dinov2"
DINOV2_MODELS = ("vit-s-14", "vit-b-14", "vit-l-14", "vit-g-14")  # ViT-L/14: Stein et al.'s and edm2's choice
DEFAULT_DINOV2_MODEL = "vit-l-14"
INPUT_SIZE = FeatureExtractorDinoV2.INPUT_IMAGE_SIZE  # 224
HEAD_DIM = 64  # every DINOv2 ViT has 64-dimensional attention heads
HUB_INTERPOLATE_OFFSET = 0.1  # the hub model's position-embedding resize (interpolate_offset, no antialiasing)


def dinov2_file_name(model: str) -> str:
    """The official file name of a model, as torch hub caches it: dinov2_vitl14_pretrain.pth for vit-l-14."""
    return f"dinov2_vit{model[4]}14_pretrain.pth"


def dinov2_url(model: str) -> str:
    return f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{model[4]}14/{dinov2_file_name(model)}"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A DINOv2 state dict: the official .pth file, or a timm .safetensors/.pth of the same network."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:  # memory-mapped: checking a 1.2 GB ViT-L file costs no copy
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a file in torch's legacy (non-zip) format cannot be memory-mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise GenlabError(f"cannot read the DINOv2 weights {path} ({type(exc).__name__}: {exc}).") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise GenlabError(f"{path} is not a DINOv2 ViT state dict (no pos_embed / patch_embed.proj.weight): give "
                          "dinov2_vit*14_pretrain.pth from facebookresearch/dinov2, or timm's copy of it.")
    return state


def hub_grid_position_embedding(pos_embed: Tensor, grid: int) -> Tensor:
    """The hub model's position embeddings [1, 1 + M*M, D] resized to a grid x grid patch grid, as its
    interpolate_pos_encoding does for every forward of a (14 grid)-pixel image."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    m = math.isqrt(patches.shape[1])
    if m == grid:
        return pos_embed
    scale = (grid + HUB_INTERPOLATE_OFFSET) / m
    resized = F.interpolate(patches.reshape(1, m, m, -1).permute(0, 3, 1, 2), scale_factor=(scale, scale),
                            mode="bicubic", antialias=False)
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([cls, resized.to(pos_embed.dtype)], dim=1)


def build_dinov2(state: dict[str, Tensor]) -> nn.Module:
    """timm's ViT with the shapes of `state`, for 224 x 224 inputs, returning the normalised CLS token."""
    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    width = int(state["pos_embed"].shape[-1])
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    swiglu = "blocks.0.mlp.w12.weight" in state
    hidden = int(state["blocks.0.mlp.w12.weight" if swiglu else "blocks.0.mlp.fc1.weight"].shape[0])
    extra: dict[str, Any] = {"mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU} if swiglu else {}
    if "register_tokens" in state:
        raise GenlabError("DINOv2 weights with registers (dinov2_vit*14_reg) are not the FD-DINOv2 network; give "
                          "dinov2_vit*14_pretrain.pth.")
    model = VisionTransformer(img_size=INPUT_SIZE, patch_size=patch, embed_dim=width, depth=depth,
                              num_heads=width // HEAD_DIM, mlp_ratio=hidden / width, init_values=1.0, num_classes=0,
                              global_pool="token", **extra)
    state = dict(state)
    state["pos_embed"] = hub_grid_position_embedding(state["pos_embed"], INPUT_SIZE // patch)
    model.load_state_dict(checkpoint_filter_fn(state, model), strict=True)
    return model


class DinoV2FeatureExtractor(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor (its forward and preprocessing), with the network built by genlab from a
    weights file instead of torch hub."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 feature_extractor_internal_dtype: str | None = None, **kwargs: Any) -> None:
        FeatureExtractorBase.__init__(self, name, features_list)  # the parent's own __init__ calls torch hub
        if feature_extractor_weights_path is None:
            raise ValueError(f"{name} needs feature_extractor_weights_path: a DINOv2 weights file")
        self.feature_extractor_internal_dtype = text_to_dtype(feature_extractor_internal_dtype, "float32")
        self.model = build_dinov2(read_state_dict(feature_extractor_weights_path))
        self.num_features = int(self.model.embed_dim)
        self.to(self.feature_extractor_internal_dtype)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def can_be_compiled() -> bool:
        return False


if DINOV2_NAME not in FEATURE_EXTRACTORS_REGISTRY:  # registering twice is an error in torch-fidelity
    register_feature_extractor(DINOV2_NAME, DinoV2FeatureExtractor)
