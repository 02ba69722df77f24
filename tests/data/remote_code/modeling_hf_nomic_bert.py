# Test stand-in for nomic-ai/nomic-bert-2048's modeling_hf_nomic_bert.py: only its relative imports matter
# here (the stage command must follow them; vLLM runs its own NomicBertModel, never this file).
from .configuration_hf_nomic_bert import NomicBertConfig  # noqa: F401
from .bert_padding import pad_input  # noqa: F401
