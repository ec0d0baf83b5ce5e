"""The emulator's default VPC, for test and emulator set-up: two subnets in different
Availability Zones and the default security group, as JSON. Runs with the boto3 that
comes with moto in .venv; AWS_ENDPOINT_URL points at the emulator."""
import json
import os

import boto3

ec2 = boto3.client(
    "ec2",
    endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
)
subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
by_az = {}
for s in subnets:
    by_az.setdefault(s["AvailabilityZone"], s["SubnetId"])
groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])
print(json.dumps({"subnets": sorted(by_az.values())[:2], "sg": groups["SecurityGroups"][0]["GroupId"]}))
