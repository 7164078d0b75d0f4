//! A [moto](https://github.com/getmoto/moto) server (AWS emulator: SQS, DynamoDB, SSM, S3,
//! CloudFormation, IAM) for tests and benchmarks, with no manual setup.
//!
//! [`Moto::start`] makes sure moto is importable (the system Python's, else a private install
//! under `~/.cache/hubsync-moto`, installed with pip on first use under a file lock), starts
//! `moto.server` on a free port of 127.0.0.1 as a child process logging to a temporary file,
//! and waits until it answers HTTP. Dropping the [`Moto`] kills the server; the server also exits
//! on its own when the test process dies (it watches its stdin, a pipe from this process).
//!
//! Environment overrides: `HUBSYNC_PYTHON` (interpreter, default `python3`) and
//! `HUBSYNC_MOTO_DIR` (private install directory, default `$HOME/.cache/hubsync-moto`).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// How long [`Moto::start`] waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at starting the server (a free port may be taken between probing and binding).
const START_ATTEMPTS: usize = 3;
/// The moto release the server script's patches are written against (they replace internals).
const MOTO_VERSION: &str = "5.2.5";
/// Modules moto needs to run as a server and that the Python helpers import, at the pinned
/// version.
const IMPORT_CHECK: &str =
    "import moto, moto.server, boto3; assert moto.__version__ == '5.2.5', moto.__version__";

/// The server's entry point: exit when stdin reaches EOF (the parent died or dropped us), then
/// run `moto.server` on the port given as first argument.
///
/// moto's server is threaded and its DynamoDB backend takes no lock, so two concurrent
/// conditional writes to one item can both pass their condition (a lost update the real
/// service never allows: DynamoDB conditions and transactions are atomic). The run ledger relies
/// on that atomicity, so DynamoDB requests are serialized here; SQS long polls stay concurrent.
///
/// moto's SQS long poll waits only while its queue shows no visible message. A FIFO queue whose
/// visible messages all belong to a group in flight (the merger holding one partition's task
/// while the next waits behind it) makes every other long poll spin for its whole wait, taking
/// the interpreter's one core from every other request; the emulator then answers the
/// pipeline's calls seconds late. Such a poll waits here for a send or 50 ms between scans.
const SERVER_SCRIPT: &str = r#"
import os, sys, threading
def _watch_parent():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)
threading.Thread(target=_watch_parent, daemon=True).start()
from moto.dynamodb.responses import DynamoHandler
_dynamo_lock = threading.Lock()
_call_action = DynamoHandler.call_action
def _atomic_call_action(self):
    with _dynamo_lock:
        return _call_action(self)
DynamoHandler.call_action = _atomic_call_action
from moto.sqs.models import Queue
def _wait_for_messages(self, timeout):
    with self._messages_lock:
        if self.messages:
            self._messages_lock.wait(timeout=min(timeout, 0.05))
        else:
            self._messages_lock.wait_for(lambda: self.messages, timeout=timeout)
Queue.wait_for_messages = _wait_for_messages
# moto's TransactWriteItems deep-copies each table it touches to roll back a cancelled
# transaction: a cost in time and memory that grows with the table (a ledger of a few
# thousand markers took minutes and gigabytes). The rollback here restores only the items the
# transaction names, which is all a transaction can change (the DynamoDB ledger contract's
# repeated steps fail if a cancelled transaction keeps its head write).
import copy as _copy
import moto.dynamodb.models as _ddb_models
class _NoTableCopy:
    def __getattr__(self, name):
        return getattr(_copy, name)
    @staticmethod
    def deepcopy(x, memo=None):
        if isinstance(x, _ddb_models.Table):
            return x
        return _copy.deepcopy(x, memo)
_ddb_models.copy = _NoTableCopy()
_transact_write_items = _ddb_models.DynamoDBBackend.transact_write_items
def _item_key(table, op):
    if "Item" in op:
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
        return key
    return op.get("Key")
def _transact_with_item_rollback(self, transact_items):
    saved = []
    for entry in transact_items:
        for _, op in entry.items():
            table = self.tables.get(op.get("TableName"))
            key = _item_key(table, op) if table is not None else None
            if key is not None:
                current = self.get_item(table.name, key)
                saved.append((table.name, key, _copy.deepcopy(current.to_json()["Attributes"]) if current else None))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for name, key, attrs in reversed(saved):
            if attrs is None:
                if self.get_item(name, key) is not None:
                    self.delete_item(name, key)
            else:
                self.put_item(name, attrs)
        raise
_ddb_models.DynamoDBBackend.transact_write_items = _transact_with_item_rollback
# With IAM enforced (see `Moto::enforce_iam`), stock moto checks DynamoDB and SSM calls against
# the resource "*", so a policy naming its table or parameter denies everything, and checks
# batch and transaction calls under action names real IAM does not have. These checks use the
# (action, resource) pairs AWS evaluates: the queue, table or parameter ARN, batch calls as
# their single action, BatchGet/BatchWrite per table, TransactWriteItems per item.
from urllib.parse import urlparse
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import IAMRequest
from moto.sqs.responses import SQSResponse
from moto.ssm.responses import SimpleSystemManagerResponse
def _check_pairs(self, pairs):
    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return
    parsed = urlparse(self.uri)
    path = self.raw_path + ("?" + parsed.query if parsed.query else "")
    for i, (action, resource) in enumerate(pairs):
        req = IAMRequest(account_id=self.current_account, method=self.method, path=path,
                         data=self.data, body=self.raw_body, headers=self.headers, action=action)
        if i == 0:
            req.check_signature()
        req.check_action_permitted(resource)
def _params(self):
    p = getattr(self, "params", None)
    if isinstance(p, dict) and p:
        return p
    try:
        import json
        return json.loads(self.body or "{}")
    except Exception:
        return {}
def _sqs_pairs(self):
    action = self._get_action()
    single = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}.get(action, action)
    p = _params(self)
    name = None
    if p.get("QueueUrl"):
        name = str(p["QueueUrl"]).rstrip("/").split("/")[-1]
    elif p.get("QueueName"):
        name = p["QueueName"]
    if not name:
        return [(single, "*")]
    return [(single, f"arn:aws:sqs:{self.region}:{self.current_account}:{name}")]
def _ddb_pairs(self):
    action = self._get_action()
    p = _params(self)
    arn = lambda t: t if t.startswith("arn:") else f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{t}"
    if action in ("BatchGetItem", "BatchWriteItem"):
        return [(action, arn(t)) for t in p.get("RequestItems", {})] or [(action, "*")]
    if action in ("TransactWriteItems", "TransactGetItems"):
        m = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
             "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
        pairs = [(m[k], arn(v["TableName"])) for item in p.get("TransactItems", []) for k, v in item.items()]
        return pairs or [(action, "*")]
    if p.get("TableName"):
        r = arn(p["TableName"])
        if action in ("Query", "Scan") and p.get("IndexName"):
            r += "/index/" + p["IndexName"]
        return [(action, r)]
    return [(action, "*")]
def _ssm_pairs(self):
    action = self._get_action()
    p = _params(self)
    arn = lambda n: f"arn:aws:ssm:{self.region}:{self.current_account}:parameter/{n.lstrip('/')}"
    if p.get("Name"):
        return [(action, arn(p["Name"]))]
    if p.get("Names"):
        return [(action, arn(n)) for n in p["Names"]]
    return [(action, "*")]
# Glue authorizes a table call on the catalog, the database and the table (a database call on
# the catalog and the database); moto checks "*".
from moto.glue.responses import GlueResponse
def _glue_pairs(self):
    action = self._get_action()
    p = _params(self)
    base = f"arn:aws:glue:{self.region}:{self.current_account}"
    pairs = [(action, f"{base}:catalog")]
    if "Table" in action:
        db = p.get("DatabaseName")
        table = p.get("Name") or (p.get("TableInput") or {}).get("Name") or "*"
        if db:
            pairs += [(action, f"{base}:database/{db}"), (action, f"{base}:table/{db}/{table}")]
    else:
        db = p.get("Name") or (p.get("DatabaseInput") or {}).get("Name")
        if db:
            pairs.append((action, f"{base}:database/{db}"))
    return pairs
for _cls, _fn in ((SQSResponse, _sqs_pairs), (DynamoHandler, _ddb_pairs),
                  (SimpleSystemManagerResponse, _ssm_pairs), (GlueResponse, _glue_pairs)):
    _cls._authenticate_and_authorize_normal_action = (
        lambda self, resource="*", _fn=_fn: _check_pairs(self, _fn(self)))
# S3 authorizes DeleteObjects per object (s3:DeleteObject on each key); moto checks the bucket.
import xmltodict
from moto.s3.responses import S3Response
_s3_auth = S3Response._authenticate_and_authorize_s3_action
def _s3_auth_per_key(self, bucket_name=None, key_name=None):
    if key_name is None and bucket_name and self.data.get("Action") == "DeleteObject":
        try:
            objects = xmltodict.parse(self.body)["Delete"].get("Object", [])
        except Exception:
            objects = []
        if not isinstance(objects, list):
            objects = [objects]
        if objects:
            for obj in objects:
                _s3_auth(self, bucket_name=bucket_name, key_name=obj["Key"])
            return
    return _s3_auth(self, bucket_name=bucket_name, key_name=key_name)
S3Response._authenticate_and_authorize_s3_action = _s3_auth_per_key
# With HUBSYNC_MOTO_COUNT=1 (`Moto::start_counting`), every request is counted by the API call
# AWS would bill and DynamoDB's request units are reckoned from item sizes; GET
# /_hubsync/requests answers the counts and DELETE resets them.
if os.environ.get("HUBSYNC_MOTO_COUNT") == "1":
    import io, json, math, base64, collections
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    _counts = collections.Counter()
    _counts_lock = threading.Lock()
    def _value_size(v):
        (t, x), = v.items()
        if t == "S": return len(x.encode())
        if t == "N": return len(x.lstrip("-").replace(".", "").lstrip("0")) // 2 + 2
        if t == "B": return len(base64.b64decode(x))
        if t in ("BOOL", "NULL"): return 1
        if t == "SS": return sum(len(e.encode()) for e in x)
        if t == "NS": return sum(len(e) // 2 + 2 for e in x)
        if t == "BS": return sum(len(base64.b64decode(e)) for e in x)
        if t == "L": return 3 + sum(1 + _value_size(e) for e in x)
        if t == "M": return 3 + sum(1 + len(k.encode()) + _value_size(e) for k, e in x.items())
        return 1
    def _item_size(item):
        return sum(len(k.encode()) + _value_size(v) for k, v in (item or {}).items())
    def _wru(item): return max(1, math.ceil(_item_size(item) / 1024))
    def _rru(size, consistent): return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)
    def _ddb_units(op, req, resp):
        consistent = bool(req.get("ConsistentRead"))
        if op == "PutItem": return 0, _wru(req.get("Item"))
        if op == "UpdateItem": return 0, _wru(resp.get("Attributes") or {k: {"S": ""} for k in req.get("Key", {})})
        if op == "DeleteItem": return 0, 1
        if op == "GetItem": return _rru(_item_size(resp.get("Item")), consistent), 0
        if op in ("Query", "Scan"): return _rru(sum(_item_size(i) for i in resp.get("Items", [])), consistent), 0
        if op == "BatchGetItem":
            # Each key is read as a GetItem is: an item by its size, a missing one at the
            # minimum unit; keys left unprocessed are not read.
            r = 0.0
            for table, asked in req.get("RequestItems", {}).items():
                c = bool(asked.get("ConsistentRead"))
                items = resp.get("Responses", {}).get(table, [])
                unread = len(resp.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
                missing = max(0, len(asked.get("Keys", [])) - unread - len(items))
                r += sum(_rru(_item_size(i), c) for i in items) + missing * _rru(0, c)
            return r, 0
        if op == "BatchWriteItem":
            w = 0
            for reqs in req.get("RequestItems", {}).values():
                for e in reqs:
                    w += _wru(e["PutRequest"]["Item"]) if "PutRequest" in e else 1
            return 0, w
        if op == "TransactWriteItems":
            w = 0
            for e in req.get("TransactItems", []):
                (k, v), = e.items()
                w += 2 * (_wru(v.get("Item")) if k == "Put" else 1)
            return 0, w
        if op == "TransactGetItems":
            return sum(2 * _rru(_item_size(i.get("Item")), True) for i in resp.get("Responses", [])), 0
        return 0, 0
    def _s3_call(method, query):
        q = dict(p.split("=", 1) if "=" in p else (p, "") for p in query.split("&") if p)
        if method == "POST" and "delete" in q: return "DeleteObjects"
        if method in ("PUT", "POST"): return "PUT"
        if method == "DELETE": return "DELETE"
        if method == "GET" and ("list-type" in q or "prefix" in q or "delimiter" in q): return "LIST"
        return "GET"
    _orig_call = DomainDispatcherApplication.__call__
    def _counting_call(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_hubsync/requests":
            with _counts_lock:
                body = json.dumps(dict(_counts)).encode()
                if environ.get("REQUEST_METHOD") == "DELETE":
                    _counts.clear()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        auth = environ.get("HTTP_AUTHORIZATION", "")
        service = auth.split("Credential=", 1)[1].split("/")[3] if "Credential=" in auth else ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        op = target.split(".")[-1] if target else ""
        label = service
        if service == "sqs":
            from urllib.parse import parse_qs
            try:
                body = json.loads(raw or b"{}")
                queue = str(body.get("QueueUrl") or body.get("QueueName") or "")
            except Exception:
                form = parse_qs(raw.decode(errors="replace"))
                op = op or (form.get("Action") or [""])[0]
                queue = (form.get("QueueUrl") or form.get("QueueName") or [""])[0]
            if queue.endswith(".fifo"):
                label = "sqs-fifo"
        if service == "s3":
            op = _s3_call(environ.get("REQUEST_METHOD", "GET"), environ.get("QUERY_STRING", ""))
        if service not in ("sqs", "dynamodb", "s3", "ssm", "glue"):
            return _orig_call(self, environ, start_response)
        status = []
        def _start(s, h, exc_info=None):
            status.append(s)
            return start_response(s, h, exc_info)
        out = b"".join(_orig_call(self, environ, _start))
        units = (0, 0)
        if service == "dynamodb" and status and status[0].startswith("200"):
            try:
                units = _ddb_units(op, json.loads(raw or b"{}"), json.loads(out or b"{}"))
            except Exception:
                units = (0, 0)
        with _counts_lock:
            _counts[f"{label}:{op}"] += 1
            _counts["dynamodb:read_units"] += units[0]
            _counts["dynamodb:write_units"] += units[1]
        return [out]
    DomainDispatcherApplication.__call__ = _counting_call
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

/// A running moto server, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:<port>`, the endpoint of every emulated service.
    pub endpoint: String,
    /// The server's port.
    pub port: u16,
    child: Child,
    log_path: PathBuf,
    /// `PYTHONPATH` to import moto and boto3, when they come from the private install.
    python_path: Option<OsString>,
    /// The administrator's keys once IAM is enforced ([`crate::iam`]); dummy keys before.
    admin: OnceLock<AwsKeys>,
    _log_dir: tempfile::TempDir,
}

/// An access key of an emulated IAM user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Moto {
    /// Installs moto if needed, starts a server on a free port and waits until it answers.
    pub fn start() -> anyhow::Result<Moto> {
        Moto::start_with(false)
    }

    /// As [`Moto::start`], counting every request by the call AWS bills (see
    /// [`Moto::requests`]).
    pub fn start_counting() -> anyhow::Result<Moto> {
        Moto::start_with(true)
    }

    fn start_with(count: bool) -> anyhow::Result<Moto> {
        let python_path = ensure_installed()?;
        let log_dir = tempfile::Builder::new().prefix("hubsync-moto-log").tempdir()?;
        let mut last_error = anyhow!("moto never started");
        for attempt in 0..START_ATTEMPTS {
            let log_path = log_dir.path().join(format!("moto-{attempt}.log"));
            match start_server(python_path.as_ref(), &log_path, count) {
                Ok((child, port)) => {
                    return Ok(Moto {
                        endpoint: format!("http://127.0.0.1:{port}"),
                        port,
                        child,
                        log_path,
                        python_path,
                        admin: OnceLock::new(),
                        _log_dir: log_dir,
                    });
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Environment that makes `python3` import this moto and its boto3 (`PYTHONPATH`, when the
    /// private install is used; empty otherwise).
    pub fn python_env(&self) -> Vec<(String, String)> {
        self.python_path
            .iter()
            .map(|p| ("PYTHONPATH".to_string(), p.to_string_lossy().into_owned()))
            .collect()
    }

    /// Environment that points AWS SDKs and CLIs at this server, with the administrator's
    /// credentials once IAM is enforced and dummy ones before.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        let (key, secret) = match self.admin.get() {
            Some(k) => (k.access_key_id.clone(), k.secret_access_key.clone()),
            None => ("testing".to_string(), "testing".to_string()),
        };
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
        ]
    }

    /// A `python3` command with [`Moto::python_env`] and [`Moto::aws_env`] set, so boto3 inside
    /// it talks to this server.
    pub fn python(&self) -> Command {
        let mut cmd = Command::new(python_exe());
        cmd.envs(self.python_env()).envs(self.aws_env());
        // Never let a developer's own AWS profile or config leak into the emulator's clients.
        cmd.env_remove("AWS_PROFILE").env_remove("AWS_SESSION_TOKEN");
        cmd
    }

    /// Runs `python3 -c script args...` (see [`Moto::python`]) and returns its stdout; fails
    /// with its stderr when it exits non-zero.
    pub fn run_python(&self, script: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .python()
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running python3")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "python script failed ({}):\n{}\n--- stdout ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                stdout
            );
        }
        Ok(stdout)
    }

    /// The requests counted since the last reset, by `service:call` (`sqs-fifo` for FIFO
    /// queues; S3 calls as PUT, GET, LIST, DELETE, DeleteObjects), with `dynamodb:read_units` and `dynamodb:write_units`
    /// reckoned from item sizes as on-demand billing does; resets them when `reset`. Only on a
    /// server from [`Moto::start_counting`].
    pub fn requests(&self, reset: bool) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
        let (status, body) = http(
            self.port,
            if reset { "DELETE" } else { "GET" },
            "/_hubsync/requests",
        )?;
        anyhow::ensure!(status == 200, "the request counts answered {status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// Forgets every resource in every emulated service (`POST /moto-api/reset`).
    pub fn reset(&self) -> anyhow::Result<()> {
        let (status, body) = http(self.port, "POST", "/moto-api/reset")?;
        anyhow::ensure!(status == 200, "moto reset answered {status}: {body}");
        Ok(())
    }

    /// From now on every request must be signed by an IAM user's key and allowed by its
    /// policies; this process's [`Moto::aws_env`] carries `admin`'s keys.
    pub(crate) fn enforce(&self, admin: AwsKeys) -> anyhow::Result<()> {
        let (status, body) = http_with_body(self.port, "POST", "/moto-api/reset-auth", "0")?;
        anyhow::ensure!(status == 200, "moto reset-auth answered {status}: {body}");
        self.admin
            .set(admin)
            .map_err(|_| anyhow!("IAM is enforced on this server already"))
    }

    /// Whether IAM is enforced ([`Moto::enforce`]).
    pub fn enforced(&self) -> bool {
        self.admin.get().is_some()
    }

    /// The server's log so far (its stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.child.id())
            .field("python_path", &self.python_path)
            .finish()
    }
}

fn python_exe() -> OsString {
    std::env::var_os("HUBSYNC_PYTHON").unwrap_or_else(|| "python3".into())
}

fn private_install_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HUBSYNC_MOTO_DIR") {
        return Ok(PathBuf::from(dir));
    }
    cache_dir("hubsync-moto")
}

/// `$HOME/.cache/<name>`.
fn cache_dir(name: &str) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".cache").join(name))
}

/// `PYTHONPATH` value that puts `dir` first, keeping any inherited entries.
fn python_path_with(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

fn imports_ok(check: &str, python_path: Option<&OsString>) -> bool {
    let mut cmd = Command::new(python_exe());
    cmd.args(["-c", check])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(p) = python_path {
        cmd.env("PYTHONPATH", p);
    }
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

/// Makes moto importable, once per process: `None` if the interpreter already has it, else the
/// `PYTHONPATH` of the private install (installed now if missing).
fn ensure_installed() -> anyhow::Result<Option<OsString>> {
    static INSTALLED: OnceLock<Result<Option<OsString>, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let install = || -> anyhow::Result<Option<OsString>> {
                PythonPackage {
                    spec: format!("moto[server]=={MOTO_VERSION}"),
                    import_check: IMPORT_CHECK,
                    dir: private_install_dir()?,
                }
                .install_if_missing()
            };
            install().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The `PYTHONPATH` under which `import duckdb` works: DuckDB's Python package, installed with
/// pip into `~/.cache/hubsync-duckdb` on first use (tests read the lake with it, as a data team
/// would).
pub fn duckdb_python_path() -> anyhow::Result<Option<OsString>> {
    static INSTALLED: OnceLock<Result<Option<OsString>, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let install = || -> anyhow::Result<Option<OsString>> {
                PythonPackage {
                    spec: format!("duckdb=={DUCKDB_VERSION}"),
                    import_check: DUCKDB_CHECK,
                    dir: cache_dir("hubsync-duckdb")?,
                }
                .install_if_missing()
            };
            install().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The DuckDB release the lake's read test installs.
const DUCKDB_VERSION: &str = "2.0.1";
const DUCKDB_CHECK: &str = "import duckdb; assert duckdb.__version__ == '2.0.1', duckdb.__version__";

/// A Python package a test needs, installed privately with pip.
struct PythonPackage {
    /// pip's requirement (`name==version`).
    spec: String,
    import_check: &'static str,
    dir: PathBuf,
}

impl PythonPackage {
    /// `None` if the interpreter already imports it, else the `PYTHONPATH` of the private
    /// install, installed now if missing (under a file lock: parallel test binaries, CI jobs).
    fn install_if_missing(&self) -> anyhow::Result<Option<OsString>> {
        let dir = &self.dir;
        if imports_ok(self.import_check, None) {
            return Ok(None);
        }
        let python_path = python_path_with(dir);
        if imports_ok(self.import_check, Some(&python_path)) {
            return Ok(Some(python_path));
        }
        let parent = dir
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent directory", dir.display()))?;
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let lock_path = dir.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        // Another process may have installed it while we waited for the lock.
        if imports_ok(self.import_check, Some(&python_path)) {
            return Ok(Some(python_path));
        }
        // Install beside the final directory, then rename: a reader never sees half an install.
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("hubsync-python");
        let staging = parent.join(format!("{name}.installing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let started = Instant::now();
        eprintln!(
            "{} is not installed; installing it into {} (one time)",
            self.spec,
            dir.display()
        );
        let out = Command::new(python_exe())
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg("--target")
            .arg(&staging)
            .arg(&self.spec)
            .stdin(Stdio::null())
            .output()
            .context("running pip")?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&staging);
            bail!(
                "`pip install {}` failed ({}):\n{}{}",
                self.spec,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if dir.exists() {
            // A broken earlier install (it failed the import check above).
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::rename(&staging, dir)
            .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()))?;
        eprintln!("installed {} in {:.1?}", self.spec, started.elapsed());
        drop(lock);
        anyhow::ensure!(
            imports_ok(self.import_check, Some(&python_path)),
            "{} was installed into {} but `{}` still fails",
            self.spec,
            dir.display(),
            self.import_check
        );
        Ok(Some(python_path))
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Starts one server and waits until it answers; kills it on any failure.
fn start_server(
    python_path: Option<&OsString>,
    log_path: &Path,
    count: bool,
) -> anyhow::Result<(Child, u16)> {
    let port = free_port()?;
    let log = File::create(log_path)?;
    let mut cmd = Command::new(python_exe());
    cmd.arg("-c")
        .arg(SERVER_SCRIPT)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        // moto reads these for defaults; keep them deterministic.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("HUBSYNC_MOTO_COUNT", if count { "1" } else { "0" });
    if let Some(p) = python_path {
        cmd.env("PYTHONPATH", p);
    }
    let mut child = cmd.spawn().context("spawning moto.server")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok((_status, _)) = http(port, "GET", "/moto-api/") {
            return Ok((child, port));
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "moto.server exited ({status}) before answering:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "moto.server did not answer on port {port} within {START_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port` without a body; returns status and body.
fn http(port: u16, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    http_with_body(port, method, path, "")
}

/// [`http`] with a plain-text body.
fn http_with_body(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {:.200}", text))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Serializes the tests that point this process's AWS SDK at their emulator: the SDK reads its
/// endpoint from the environment, which every test of the binary shares.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the environment for the caller's whole test; release it by dropping the guard.
pub async fn env_lock() -> tokio::sync::MutexGuard<'static, ()> {
    ENV_LOCK.lock().await
}

impl Moto {
    /// Points this process's AWS SDK (and `object_store`) at this emulator. Hold
    /// [`env_lock`] while it matters.
    pub fn export_env(&self) {
        for (k, v) in self.aws_env() {
            std::env::set_var(k, v);
        }
    }
}
