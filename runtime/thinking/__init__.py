"""The thinking layer: family formats, the per-model profile and the controller."""

from ..types import MODES, Decision, Mode, decision_dict  # the decision lives with the other records
from .controller import ThinkingController
from .formats import FORMATS, ThinkingFormat, detect_format
from .profile import SIGNALS, Projection, ThinkingProfile, find_profile, probe_features, probe_signals, query_features

__all__ = ["ThinkingController", "Decision", "Mode", "MODES", "decision_dict", "FORMATS", "ThinkingFormat",
           "detect_format", "SIGNALS", "Projection", "ThinkingProfile", "find_profile", "probe_features", "probe_signals", "query_features"]
