"""The platform every package stands on: the database, the clock, background jobs, run records, refusals.

Layers import only downward: core <- agent <- review <- synthesis / train / eval. Nothing here imports
another package of the project, torch or gradio at import time.
"""
