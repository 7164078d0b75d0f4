//! The counting emulator `bench cost` prices from: each call counted once under the name AWS
//! bills it by, FIFO queues apart, and DynamoDB's request units reckoned from item sizes as
//! on-demand billing does (1 KB per write unit, 4 KB per read unit, half for an eventually
//! consistent read, twice in a transaction; a missing key read at the minimum unit, in a batch
//! as alone).

use hubsync_tests::moto::Moto;

const CALLS: &str = r#"
import boto3
kw = dict(region_name="us-east-1")
ddb = boto3.client("dynamodb", **kw)
ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
# 2 + 1 (pk "a") + 1 + 2,500 (v): 2,504 bytes, 3 write units.
ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"S": "x" * 2500}})
# 9,000 + 2 + 1 + 1: 3 read units strongly consistent.
ddb.put_item(TableName="t", Item={"pk": {"S": "b"}, "v": {"S": "y" * 9000}})
ddb.get_item(TableName="t", Key={"pk": {"S": "b"}}, ConsistentRead=True)
ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})
# One item of 2,504 bytes and one missing key, strongly consistent: 1 + 1 read units.
ddb.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "none"}}], "ConsistentRead": True}})
ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "c"}}}}])
sqs = boto3.client("sqs", **kw)
q = sqs.create_queue(QueueName="q")["QueueUrl"]
f = sqs.create_queue(QueueName="f.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
sqs.send_message(QueueUrl=q, MessageBody="m")
sqs.send_message_batch(QueueUrl=f, Entries=[{"Id": str(i), "MessageBody": str(i), "MessageGroupId": "g"} for i in range(3)])
sqs.receive_message(QueueUrl=f, MaxNumberOfMessages=10)
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="counted")
s3.put_object(Bucket="counted", Key="k/1", Body=b"1")
s3.get_object(Bucket="counted", Key="k/1")
s3.list_objects_v2(Bucket="counted", Prefix="k/")
s3.delete_object(Bucket="counted", Key="k/1")
"#;

#[test]
fn the_counting_emulator_counts_each_billed_call_and_dynamodb_units_from_item_sizes() -> anyhow::Result<()> {
    let moto = Moto::start_counting()?;
    moto.requests(true)?;
    moto.run_python(CALLS, &[])?;
    let counts = moto.requests(false)?;
    let n = |k: &str| counts.get(k).copied().unwrap_or(0.0);
    let expect = [
        ("dynamodb:CreateTable", 1.0),
        ("dynamodb:PutItem", 2.0),
        ("dynamodb:GetItem", 2.0),
        ("dynamodb:TransactWriteItems", 1.0),
        // 3 + 9 for the two puts, 2 × 1 for the transaction's put.
        ("dynamodb:write_units", 14.0),
        ("dynamodb:BatchGetItem", 1.0),
        // 3 for the 9 KB item read strongly, 0.5 for the 2.5 KB item read eventually, 1 + 1
        // for the batch's item and its missing key.
        ("dynamodb:read_units", 5.5),
        ("sqs:CreateQueue", 1.0),
        ("sqs-fifo:CreateQueue", 1.0),
        ("sqs:SendMessage", 1.0),
        ("sqs-fifo:SendMessageBatch", 1.0),
        ("sqs-fifo:ReceiveMessage", 1.0),
        ("s3:PUT", 2.0), // CreateBucket and PutObject
        ("s3:GET", 1.0),
        ("s3:LIST", 1.0),
        ("s3:DELETE", 1.0),
    ];
    for (k, v) in expect {
        assert_eq!(n(k), v, "{k} in {counts:?}");
    }
    assert_eq!(moto.requests(true)?, counts, "read again, then reset");
    assert!(moto.requests(false)?.is_empty(), "reset");
    Ok(())
}
