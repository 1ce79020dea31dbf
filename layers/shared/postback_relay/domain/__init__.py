"""The pure domain: links, trackers, affiliate configs, postback rendering, delivery rules.

Nothing here imports boto3, reads the environment or knows about HTTP events.
"""
