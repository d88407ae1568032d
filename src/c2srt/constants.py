"""Named values shared across c2srt, so no magic number lives in the code."""

from __future__ import annotations

# Image normalisation. CLIP towers expect the OpenAI statistics; MKT fine-tunes with ImageNet's.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Label values used by every dataset, metric and loss (the Open Images convention).
POSITIVE = 1
NEGATIVE = -1
IGNORE_LABEL = 0  # "not annotated": left out of losses and of each column's AP ranking

# Prompts. MKT's single template is the default; the ensemble is an option.
DEFAULT_TEMPLATE = "There is a {} in the scene"
TEMPLATE_ENSEMBLE = (
    "There is a {} in the scene",
    "a photo of a {}.",
    "a photo of the {}.",
    "a picture containing a {}.",
    "an image with a {} in it.",
)

# Evaluation.
NUS_WIDE_TOPK = (3, 5)
OPEN_IMAGES_TOPK = (10, 20)

# Tagging (c2srt predict and the web page).
DEFAULT_TOP = 5  # labels shown per image until the person asks for another number or a threshold
DEFAULT_THRESHOLD = 0.5  # P(label present) from which a label is decided present (predict, the page, the demo's F1@0.5)

# Numerics.
DEFAULT_EPS = 1e-8
INIT_LOGIT_SCALE = 10.0  # initial value of learnable cosine-score scales (stored as log)
