"""The trainer: distils a namespace's stable plaintext memories into LoRA adapters.

``services.trainer.job.train_adapter`` builds a training set from the facts
(statement, cloze and QA forms: ``dataset``, ``generators``), evaluates the serving
base model, trains a fresh LoRA with peft on Ray Train or inline (``distill``),
evaluates again (``evaluate``: cloze recall, control perplexity), gates on the
thresholds in ``trainer`` settings and saves an accepted adapter to the BlobStore
(shared.lora.AdapterStore). Every training starts from the base weights, so
retraining without a fact unlearns it. See docs/trainer.md.
"""
