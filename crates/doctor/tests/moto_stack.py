"""Test set-up for the doctor: a deployment as `sam deploy` leaves it, made on the emulator
with boto3 (from moto's .venv), so the doctor's own reads are what is under test.

    moto_stack.py NAME healthy|broken [--service-linked-role]

healthy: a VPC with two public subnets (internet gateway route, S3 gateway endpoint), the
worker image in the repository, both functions with the ffprobe layer and public IPs on.
broken: one subnet with no route out and no endpoints, an empty repository, functions
without the layer. Prints what it made as JSON."""
import io
import json
import os
import sys
import zipfile

import boto3

name, mode = sys.argv[1], sys.argv[2]
region = os.environ.get("AWS_REGION", "us-east-1")


def client(service):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=region)


ec2, ecr, lam, iam, cfn = (client(s) for s in ("ec2", "ecr", "lambda", "iam", "cloudformation"))
if "--service-linked-role" in sys.argv:
    # What `aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com` makes
    # on AWS (moto's own version of that call names the role AWSServiceRoleForecs).
    iam.create_role(
        RoleName="AWSServiceRoleForECS",
        Path="/aws-service-role/ecs.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(
            {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ),
    )

healthy = mode == "healthy"
vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.80.{i * 64}.0/18", AvailabilityZone=zones[i])["Subnet"]["SubnetId"]
    for i in range(2 if healthy else 1)
]
rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
for s in subnets:
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=s)
if healthy:
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.create_vpc_endpoint(
        VpcId=vpc, VpcEndpointType="Gateway", ServiceName=f"com.amazonaws.{region}.s3", RouteTableIds=[rtb]
    )

repo = ecr.create_repository(repositoryName=f"{name}-worker")["repository"]["repositoryUri"]
if healthy:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": "sha256:" + "1" * 64},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "size": 3, "digest": "sha256:" + "2" * 64}],
    }
    ecr.put_image(repositoryName=f"{name}-worker", imageManifest=json.dumps(manifest), imageTag="latest")

role = iam.create_role(
    RoleName=f"{name}-fn",
    AssumeRolePolicyDocument=json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    ),
)["Role"]["Arn"]
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as z:
    z.writestr("bootstrap", "#!/bin/sh\n")
layer = lam.publish_layer_version(LayerName=f"{name}-ffprobe", Content={"ZipFile": code.getvalue()})["LayerVersionArn"]
for fn in ("ingest", "fleet"):
    lam.create_function(
        FunctionName=f"{name}-{fn}",
        Runtime="provided.al2023",
        Role=role,
        Handler="bootstrap",
        Code={"ZipFile": code.getvalue()},
        Layers=[layer] if healthy else [],
        Environment={
            "Variables": {
                "VODPIPE_FFPROBE": "/opt/bin/ffprobe",
                "VODPIPE_ASSIGN_PUBLIC_IP": "ENABLED" if healthy else "DISABLED",
            }
        },
    )

# The job table, and for a broken deployment a tier whose tasks never start.
table = f"{name}-jobs"
ddb = client("dynamodb")
ddb.create_table(
    TableName=table,
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    BillingMode="PAY_PER_REQUEST",
)
if not healthy:
    import time
    ddb.put_item(TableName=table, Item={
        "pk": {"S": "FLEET"}, "sk": {"S": "LAUNCH#standard"}, "failures": {"N": "3"},
        "reason": {"S": "CannotPullContainerError: vodpipe-worker:latest: not found"},
        "last_at": {"N": str(time.time())},
    })

template = {
    "Parameters": {
        "Name": {"Type": "String"},
        "MaxWorkersPerTier": {"Type": "Number", "Default": "20"},
        "WorkerImageTag": {"Type": "String", "Default": "latest"},
        "Subnets": {"Type": "String"},
        "Repository": {"Type": "String"},
        "Table": {"Type": "String"},
    },
    "Resources": {"Alarms": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "WorkerRepositoryUri": {"Value": {"Ref": "Repository"}},
        "WorkerSubnets": {"Value": {"Ref": "Subnets"}},
        "TableName": {"Value": {"Ref": "Table"}},
    },
}
params = {"Name": name, "MaxWorkersPerTier": "5", "Subnets": ",".join(subnets), "Repository": repo, "Table": table}
cfn.create_stack(
    StackName=name,
    TemplateBody=json.dumps(template),
    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
)
print(json.dumps({"vpc": vpc, "subnets": subnets, "repository": repo}))
