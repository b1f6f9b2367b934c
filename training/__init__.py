"""Stage 3: graph classifiers that detect hallucinated answers from attention graphs.

``python -m training fit|validate|test|predict --config configs/training/gcn.yaml`` (LightningCLI),
``python -m training sweep-layers`` and ``python -m training baselines``; see docs/TRAINING.md.
"""
