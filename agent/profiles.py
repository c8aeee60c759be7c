"""Tool profiles by name: which tools a prompt lists, in its order. Plain data, so code that only counts
tool calls in a trajectory (the store, the viewer, evaluation) never loads a tool."""

from __future__ import annotations

# Tool names per profile, in prompt order; final_answer is always last. "mat" is the release's own
# toolset in the release's order; "mat+ocr" adds RapidOCR, which no release prompt lists.
MAT_TOOLS = [
    "visualizer", "facedetection", "objectlocation", "inspect_file_as_text", "image_generator",
    "segmentation", "image_edit", "ask_search_agent", "final_answer",
]
PROFILES: dict[str, list[str]] = {
    "mat": MAT_TOOLS,
    "mat+ocr": [*MAT_TOOLS[:3], "ocr", *MAT_TOOLS[3:]],
    "gaia": ["visualizer", "inspect_file_as_text", "ask_search_agent", "final_answer"],
    "gta": [
        "OCR", "ImageDescription", "RegionAttributeDescription", "TextToBbox", "CountGivenObject", "MathOCR",
        "Calculator", "Solver", "DrawBox", "AddText", "GoogleSearch", "Plot", "TextToImage", "ImageStylization",
        "final_answer",
    ],
}
TOOL_NAMES = frozenset(name for names in PROFILES.values() for name in names)
