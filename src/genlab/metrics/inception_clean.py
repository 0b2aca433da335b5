"""`protocol=clean`: Inception features with clean-fid's resizing (Parmar et al. 2022, "On aliased resizing and
surprising subtleties in GAN evaluation").

torch-fidelity (genlab's default protocol) resizes every uint8 image to 299 x 299 inside the network, bilinearly and
without antialiasing, as TensorFlow 1 did for the original FID code. clean-fid instead resizes each channel with
PIL's antialiased bicubic filter in float32 (mode "F"), clips to [0, 255] and feeds the floats to the same Inception
network without quantising them again. This extractor does that, then runs torch-fidelity's Inception layers on the
result; an image that is already 299 x 299 gives exactly torch-fidelity's features.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

INCEPTION_CLEAN_NAME = "genlab-inception-clean"
SIZE = FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE  # 299
LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")


def clean_resize(images: Tensor, size: int = SIZE) -> Tensor:
    """uint8 B x 3 x H x W -> float32 B x 3 x size x size in [0, 255]: clean-fid's PIL bicubic per channel."""
    out = np.empty((images.shape[0], images.shape[1], size, size), dtype=np.float32)
    for i, image in enumerate(images.cpu().numpy()):
        for c, channel in enumerate(image):
            resized = Image.fromarray(channel.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
            out[i, c] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out)


class CleanInceptionFeatureExtractor(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 (same weights, same layers) behind clean-fid's resize. Gives the pool3 features
    ("2048") and the unbiased logits, the layers genlab asks for."""

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        x = clean_resize(images).to(device=images.device, dtype=self.feature_extractor_internal_dtype)
        x = (x - 128) / 128  # the network's own input scaling, as torch-fidelity applies it
        for name in LAYERS:
            x = getattr(self, name)(x)
        pooled = torch.flatten(x, 1)  # [B, 2048]
        out = {"2048": pooled.to(torch.float32), "logits_unbiased": pooled.mm(self.fc.weight.T).to(torch.float32)}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def can_be_compiled() -> bool:
        return False


if INCEPTION_CLEAN_NAME not in FEATURE_EXTRACTORS_REGISTRY:  # registering twice is an error in torch-fidelity
    register_feature_extractor(INCEPTION_CLEAN_NAME, CleanInceptionFeatureExtractor)
