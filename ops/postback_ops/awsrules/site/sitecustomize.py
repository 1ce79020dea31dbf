"""On PYTHONPATH only for the subprocesses of a recorded test run (see awsrules.recorder)."""

import os

if os.environ.get("POSTBACK_AWS_CALL_LOG"):
    from postback_ops.awsrules.recorder import install_from_env

    install_from_env()
