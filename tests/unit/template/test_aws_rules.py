"""What AWS enforces and moto does not, held on template.yaml and on broken copies of it.

Each rule of postback_ops.awsrules.rules walks whatever the template holds; here it must pass
on the real template and name the resource when a copy breaks it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from template_support import TEMPLATE

from postback_ops.awsrules import rules

CMK_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
        },
    ],
}


def _copy() -> dict[str, Any]:
    return copy.deepcopy(TEMPLATE)


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda rule: rule.__name__)
def test_template_yaml_keeps_every_aws_rule(rule: Callable[[dict[str, Any]], list[str]]) -> None:
    # GIVEN template.yaml WHEN the rule reads it THEN it finds nothing
    assert rule(TEMPLATE) == []


def test_the_rules_see_every_alarm_topic_function_and_queue_of_the_template() -> None:
    # The rules would pass vacuously on a template they could not read: they must find work.
    assert rules.resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm")
    assert list(rules._function_events(TEMPLATE, "SQS"))
    assert list(rules._function_events(TEMPLATE, "HttpApi"))


# --- the alarm topic ---------------------------------------------------------------------------


def _alarm_topic(template: dict[str, Any]) -> dict[str, Any]:
    topic: dict[str, Any] = template["Resources"]["AlarmTopic"]
    properties: dict[str, Any] = topic.setdefault("Properties", {})
    return properties


def test_an_alarm_topic_on_the_aws_managed_sns_key_is_refused() -> None:
    # GIVEN the alarm topic encrypted with alias/aws/sns, as it once was
    template = _copy()
    _alarm_topic(template)["KmsMasterKeyId"] = "alias/aws/sns"
    # THEN the rule says CloudWatch alarms cannot publish to it
    (problem,) = rules.alarm_topics_are_publishable(template)
    assert problem.startswith("AlarmTopic: encrypted with the AWS managed key alias/aws/sns")


def test_an_alarm_topic_on_a_customer_key_needs_cloudwatch_and_root_in_its_policy() -> None:
    # GIVEN the topic on a customer managed key whose policy grants CloudWatch and the root
    template = _copy()
    template["Resources"]["AlarmKey"] = {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": CMK_POLICY}}
    _alarm_topic(template)["KmsMasterKeyId"] = {"Ref": "AlarmKey"}
    # THEN it passes
    assert rules.alarm_topics_are_publishable(template) == []
    # WHEN the CloudWatch statement loses kms:GenerateDataKey*
    template["Resources"]["AlarmKey"]["Properties"]["KeyPolicy"]["Statement"][1]["Action"] = ["kms:Decrypt"]
    assert rules.alarm_topics_are_publishable(template) == [
        "AlarmTopic: key AlarmKey's policy does not grant cloudwatch.amazonaws.com kms:GenerateDataKey"
    ]
    # WHEN the root statement goes (the key could no longer be administered)
    del template["Resources"]["AlarmKey"]["Properties"]["KeyPolicy"]["Statement"][0]
    assert "AlarmTopic: key AlarmKey's policy does not let the account root administer it" in (
        rules.alarm_topics_are_publishable(template)
    )


# --- the other rules, each broken once ----------------------------------------------------------


def test_a_queue_visibility_below_six_times_its_consumer_timeout_is_refused() -> None:
    template = _copy()
    template["Resources"]["PostbackQueue"]["Properties"]["VisibilityTimeout"] = 60
    assert rules.sqs_visibility_covers_function_timeout(template) == [
        "DispatchFunction: PostbackQueue VisibilityTimeout 60 s < 6 x function Timeout 30 s"
    ]


def test_a_maximum_concurrency_parameter_that_allows_one_is_refused() -> None:
    template = _copy()
    template["Parameters"]["DispatchMaximumConcurrency"]["MinValue"] = 1
    assert rules.event_source_concurrency_in_range(template) == [
        "DispatchFunction: MaximumConcurrency may be 1..1000; AWS accepts 2..1000"
    ]


def test_queue_limits_and_a_dead_letter_queue_that_forgets_sooner_are_refused() -> None:
    template = _copy()
    template["Resources"]["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] = 86_400
    template["Resources"]["PostbackQueue"]["Properties"]["DelaySeconds"] = 901
    assert rules.queue_settings_in_range(template) == [
        "PostbackQueue: DelaySeconds above 900",
        "PostbackQueue: dead-letter queue DeadLetterQueue keeps messages 86400 s < 1209600 s",
    ]


def test_an_api_function_slower_than_the_http_api_integration_timeout_is_refused() -> None:
    template = _copy()
    template["Resources"]["IngestFunction"]["Properties"]["Timeout"] = 45
    assert rules.http_api_functions_fit_the_integration_timeout(template) == [
        "IngestFunction: Timeout 45 s behind an HTTP API (integration timeout 30 s)"
    ]


def test_lambda_limits_timeout_environment_and_body_size() -> None:
    template = _copy()
    props = template["Resources"]["TestLinkFunction"]["Properties"]
    props["Timeout"] = 901
    props["Environment"]["Variables"]["PADDING"] = "x" * 4096
    template["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]["MAX_BODY_BYTES"] = str(6 << 20)
    found = rules.functions_within_lambda_limits(template)
    assert "TestLinkFunction: Timeout 901 s above Lambda's 900 s" in found
    assert any(p.startswith("TestLinkFunction: environment about") for p in found)
    assert "IngestFunction: MAX_BODY_BYTES 6291456 not below Lambda's 6 MB synchronous payload" in found


def test_a_function_logging_to_a_group_without_retention_is_refused() -> None:
    template = _copy()
    del template["Resources"]["DispatchLogGroup"]["Properties"]["RetentionInDays"]
    assert rules.function_logs_go_to_kept_log_groups(template) == [
        "DispatchFunction: log group DispatchLogGroup has no RetentionInDays"
    ]


def test_a_task_timing_out_before_its_function_is_refused() -> None:
    template = _copy()
    template["Resources"]["TestLinkFunction"]["Properties"]["Timeout"] = 200
    found = rules.state_machine_tasks_outlast_their_functions(template)
    assert "TestLinkStateMachine.FollowLink: TimeoutSeconds 180 <= TestLinkFunction Timeout 200 s" in found


def test_stream_event_source_bounds() -> None:
    template = _copy()
    template["Resources"]["DispatchFunction"]["Properties"]["Events"]["Changes"] = {
        "Type": "DynamoDB",
        "Properties": {"BatchSize": 10_001, "MaximumRecordAgeInSeconds": 30, "StartingPosition": "LATEST"},
    }
    assert rules.stream_event_sources_in_range(template) == [
        "DispatchFunction: stream BatchSize 10001 outside 1..10000",
        "DispatchFunction: MaximumRecordAgeInSeconds 30 not -1 or 60..604800",
    ]


def test_a_table_retained_on_delete_but_not_on_replace_is_refused() -> None:
    template = _copy()
    del template["Resources"]["AffiliatesTable"]["UpdateReplacePolicy"]
    assert rules.retained_tables_are_retained_on_replace_too(template) == [
        "AffiliatesTable: DeletionPolicy Retain without UpdateReplacePolicy Retain"
    ]
