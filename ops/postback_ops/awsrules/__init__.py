"""Checks that hold template.yaml to AWS's rules, not only moto's.

- `translate`: the SAM template as CloudFormation, offline, the way `sam package` and the
  SAM transform would hand it to CloudFormation (cfn-lint runs on that).
- `recorder`: every AWS call the functions, the state machine and the CLI make in the test
  suites, attributed to the principal that made it.
- `iam`: each recorded call evaluated against that principal's translated role.
"""
