"""boto3 and requests implementations of the ports (`postback_relay.ports`).

Each adapter takes an optional client, so a handler builds it once per cold start and a test
can hand in one bound to moto or a botocore Stubber. Adapters translate AWS errors into domain
errors (`InfrastructureError`, `ConflictError`, `NotFoundError`).
"""
