"""The AWS namespace metrics the alarms and dashboards may name: what each service documents it publishes,
with the page that says so. A metric outside this list (a typo, a metric of another service) fails
tests/template/test_dashboards_template.py and test_alarms_template.py."""

from __future__ import annotations

AWS_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "AWS/Lambda": (
        "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html",
        frozenset({"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}),
    ),
    "AWS/ApiGateway": (
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html",
        frozenset({"Count", "4XXError", "5XXError", "Latency", "IntegrationLatency"}),
    ),
    "AWS/States": (
        "https://docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html",
        frozenset({"ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}),
    ),
    "AWS/RDS": (
        "https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/Aurora.AuroraMonitoring.Metrics.html",
        frozenset(
            {
                "DatabaseConnections",
                "CPUUtilization",
                "FreeableMemory",
                "ServerlessDatabaseCapacity",
                "ACUUtilization",
            }
        ),
    ),
    "AWS/SQS": (
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html",
        frozenset(
            {
                "ApproximateNumberOfMessagesVisible",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateAgeOfOldestMessage",
                "NumberOfMessagesSent",
            }
        ),
    ),
    # Published only for the group metrics a group enables (MetricsCollection).
    "AWS/AutoScaling": (
        "https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-metrics.html",
        frozenset(
            {
                "GroupInServiceInstances",
                "GroupPendingInstances",
                "GroupTerminatingInstances",
                "GroupDesiredCapacity",
            }
        ),
    ),
    "AWS/Events": (
        "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html",
        frozenset({"MatchedEvents", "Invocations", "FailedInvocations"}),
    ),
    # EC2's usage metrics, the figures its vCPU service quotas count (Class G/OnDemand, G/Spot, ...).
    "AWS/Usage": (
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/viewing_metrics_with_cloudwatch.html#service-quota-metrics",
        frozenset({"ResourceCount"}),
    ),
}
