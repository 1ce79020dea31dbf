"""The use cases of the relay, over the ports: no boto3, no os.environ, no HTTP events."""
