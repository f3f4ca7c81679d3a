"""Every state change of a generation happens here.

The pipeline is `generation_create` (web, `creating`) → `generation_call` (provider
queue, `call`) → `generation_mirror` (images queue, `mirror`), with
`generation_sweep` (`claims`) re-sending whatever a lost message or a dead worker
left behind. Each step claims the generation with one conditional UPDATE, so a
message delivered twice does the work once; a batch's calls each keep an attempt
record (ProviderCall), and `ledger` turns them into the generation's cost.
`references` sends the starting image of an image-to-image request. `cancelling` stops
a job for good; `rerunning` makes Regenerate and Variations from a finished one.

Callers import the services from here; the modules are how the code is kept apart.
"""

from __future__ import annotations

from generator.services.call import (
    _save_provider_result,
    failures_note,
    generation_call,
    splits_per_image,
)
from generator.services.cancelling import generation_cancel
from generator.services.claims import (
    RetryLater,
    RetryPolicy,
    default_policy,
    generation_sweep,
    retry_delay,
)
from generator.services.creating import (
    LIMIT_PREFIX,
    budget_limit_reason,
    fair_priority,
    generation_create,
    generation_limit_reason,
    generation_retry,
    generation_visibility_set,
    model_setting_set,
    month_spend,
    month_start,
)
from generator.services.ledger import cost_entry_record, cost_entry_sync
from generator.services.mirror import generation_mirror
from generator.services.references import (
    REFERENCE_SALT,
    generation_request_body,
    reference_file_name,
    reference_token,
    reference_unsign,
)
from generator.services.rerunning import (
    VARIATION_COUNT,
    generation_regenerate,
    generation_variations,
    variations_supported,
)

__all__ = [
    "LIMIT_PREFIX",
    "REFERENCE_SALT",
    "VARIATION_COUNT",
    "RetryLater",
    "RetryPolicy",
    "_save_provider_result",
    "budget_limit_reason",
    "cost_entry_record",
    "cost_entry_sync",
    "default_policy",
    "failures_note",
    "fair_priority",
    "generation_call",
    "generation_cancel",
    "generation_create",
    "generation_limit_reason",
    "generation_mirror",
    "generation_regenerate",
    "generation_request_body",
    "generation_retry",
    "generation_sweep",
    "generation_variations",
    "generation_visibility_set",
    "model_setting_set",
    "month_spend",
    "month_start",
    "reference_file_name",
    "reference_token",
    "reference_unsign",
    "retry_delay",
    "variations_supported",
    "splits_per_image",
]
