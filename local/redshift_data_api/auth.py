"""Who a Data API request runs as, resolved like the service resolves it.

The Redshift Data API picks the database user from the request
(https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-access.html, "Authorizing access
to the Amazon Redshift Data API"):

- ``SecretArn``: the secret's ``username`` and ``password`` (read from Secrets Manager). A
  secret without both is refused at once ("username and password in secret cannot be empty",
  the service's text, boto/boto3#2899); a wrong password fails the statement at log-in with
  ``FATAL: password authentication failed for user "<name>"``.
- ``DbUser`` (provisioned clusters only, temporary credentials through
  GetClusterCredentials): that existing user. On a Serverless workgroup it is a
  ValidationException.
- neither: the caller's IAM identity, through GetCredentials (Serverless) or
  GetClusterCredentialsWithIAM (clusters), as the database user ``IAMR:<role-name>`` for a
  role and ``IAM:<user-name>`` for an IAM user, created on first use with no privileges of
  its own ("The database user is mapped 1:1 to the source IAM identity").

Locally the caller's identity comes from the request's SigV4 access key id and session token,
sent to STS GetCallerIdentity at the configured endpoint (moto): credentials from
``AssumeRole`` there resolve to ``assumed-role/<role>/<session>``, moto's IAM users to
``user/<name>``, and any other key to moto's default ``user/moto``. IAM policies are not
evaluated (moto does not by default): a missing ``redshift-serverless:GetCredentials``
permission is not modelled, only the database privileges of the resulting user.

Every user is a PostgreSQL role, so GRANTs and ownership behave as on Redshift. The local
PostgreSQL trusts loopback connections, so passwords are checked here against the role's
stored SCRAM-SHA-256 (or MD5) verifier, exactly as PostgreSQL's own check would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local.redshift_data_api.errors import ApiError, validation

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_ROLE_ARN = re.compile(r"^arn:[^:]+:sts::\d{12}:assumed-role/([^/]+)/")
_USER_ARN = re.compile(r"^arn:[^:]+:(?:iam|sts)::\d{12}:user/(?:.*/)?([^/]+)$")


@dataclass(frozen=True)
class Caller:
    """The AWS credentials a request was signed with (the secret key never travels)."""

    access_key_id: str = ""
    session_token: str | None = None

    @classmethod
    def from_headers(cls, authorization: str | None, token: str | None) -> Caller:
        match = _CREDENTIAL.search(authorization or "")
        return cls(match.group(1) if match else "", token or None)


@dataclass(frozen=True)
class Login:
    """A database user to connect as; ``password`` None means temporary credentials
    issued by the service (DbUser, IAM identity), which need no password check here."""

    user: str
    password: str | None = None
    create_if_missing: bool = False


@dataclass(frozen=True)
class AuthSettings:
    """Where the stand-in reads secrets and resolves callers (moto locally)."""

    secrets_endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    region: str = "us-east-1"


class LoginFailed(Exception):
    """The database refuses the log-in; ``str()`` is the FATAL text the statement reports."""


def scram_matches(verifier: str, password: str) -> bool:
    """True if ``password`` matches PostgreSQL's ``SCRAM-SHA-256$iter:salt$stored:server``."""
    try:
        method, rest = verifier.split("$", 1)
        iterations_salt, keys = rest.split("$", 1)
        iterations, salt = iterations_salt.split(":", 1)
        stored_key = keys.split(":", 1)[0]
        if method != "SCRAM-SHA-256":
            return False
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"),
                                     base64.b64decode(salt), int(iterations))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        return hmac.compare_digest(hashlib.sha256(client_key).digest(),
                                   base64.b64decode(stored_key))
    except (ValueError, TypeError):
        return False


def password_matches(verifier: str | None, user: str, password: str) -> bool:
    if not verifier:
        return False
    if verifier.startswith("md5"):
        digest = hashlib.md5((password + user).encode("utf-8")).hexdigest()  # noqa: S324
        return hmac.compare_digest(verifier, "md5" + digest)
    return scram_matches(verifier, password)


def database_user_for(arn: str) -> str:
    """``IAMR:<role>`` for an assumed role, ``IAM:<user>`` for an IAM user."""
    role = _ROLE_ARN.match(arn)
    if role:
        return f"IAMR:{role.group(1)}"
    user = _USER_ARN.match(arn)
    if user:
        return f"IAM:{user.group(1)}"
    raise validation(f"The caller's identity {arn} cannot be mapped to a database user.")


class Authenticator:
    """Resolves requests to :class:`Login` s and checks them against PostgreSQL's roles."""

    def __init__(self, settings: AuthSettings, admin_conninfo: str) -> None:
        self._settings = settings
        self._admin_conninfo = admin_conninfo
        self._lock = threading.Lock()
        self._identities: dict[Caller, str] = {}
        self._verified: dict[tuple[str, str, str], bool] = {}
        self._admin: psycopg.Connection[tuple[Any, ...]] | None = None
        self._clients: dict[tuple[str, Caller | None], Any] = {}

    # ------------------------------------------------------------------ requests

    def login_for(self, body: dict[str, Any], caller: Caller, *, serverless: bool) -> Login:
        """The database user of a request (raises ApiError as the service would)."""
        secret_arn, db_user = body.get("SecretArn"), body.get("DbUser")
        if secret_arn:
            return self._secret_login(str(secret_arn))
        if db_user:
            if serverless:
                raise validation("DbUser is not supported for Redshift Serverless workgroups; "
                                 "use SecretArn or your IAM identity.")
            return Login(user=str(db_user))
        return Login(user=self.iam_user(caller), create_if_missing=True)

    def _client(self, service: str, caller: Caller | None = None) -> Any:
        """A boto3 client (cached: building one costs far more than a call)."""
        key = (service, caller)
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            client = self._new_client(service, caller)
            with self._lock:
                self._clients[key] = client
        return client

    def _new_client(self, service: str, caller: Caller | None) -> Any:
        endpoint = (self._settings.secrets_endpoint_url if service == "secretsmanager"
                    else self._settings.sts_endpoint_url)
        # moto identifies callers by access key id only; the secret key is never sent to us.
        session = boto3.session.Session(
            aws_access_key_id=(caller.access_key_id if caller and caller.access_key_id
                               else "testing"),
            aws_secret_access_key="testing",  # noqa: S106 - moto does not check signatures
            aws_session_token=caller.session_token if caller else None,
            region_name=self._settings.region)
        config = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10)
        return session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]

    def _secret_login(self, secret_arn: str) -> Login:
        try:
            value = self._client("secretsmanager").get_secret_value(SecretId=secret_arn)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise validation("Secrets Manager can't find the specified secret: "
                                 f"{secret_arn}") from None
            raise validation(f"Could not read the secret {secret_arn}: {code}") from None
        except BotoCoreError as exc:
            raise ApiError("InternalServerException",
                           f"Secrets Manager is unreachable: {type(exc).__name__}") from None
        try:
            fields = json.loads(value.get("SecretString") or "{}")
        except ValueError:
            fields = {}
        user = fields.get("username") if isinstance(fields, dict) else None
        password = fields.get("password") if isinstance(fields, dict) else None
        if not isinstance(user, str) or not user or not isinstance(password, str) or not password:
            raise validation("username and password in secret cannot be empty")
        return Login(user=user, password=password)

    def iam_user(self, caller: Caller) -> str:
        """The database user of the caller's IAM identity (STS GetCallerIdentity, cached)."""
        with self._lock:
            known = self._identities.get(caller)
        if known is not None:
            return known
        try:
            arn = str(self._client("sts", caller).get_caller_identity()["Arn"])
        except (ClientError, BotoCoreError) as exc:
            raise IdentityUnavailable(
                f"The caller's IAM identity could not be resolved: {type(exc).__name__}"
            ) from None
        user = database_user_for(arn)
        with self._lock:
            self._identities[caller] = user
        return user

    # ------------------------------------------------------------------- log-in

    def _admin_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self._admin_conninfo, dbname="postgres",
                                          autocommit=True)
        return self._admin

    def check(self, login: Login) -> None:
        """Raise :class:`LoginFailed` unless ``login`` may connect (creating IAM users)."""
        try:
            with self._lock:
                row = self._admin_connection().execute(
                    "SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = %s",
                    (login.user,)).fetchone()
                if row is None and login.create_if_missing:
                    quoted = login.user.replace('"', '""')
                    self._admin_connection().execute(f'CREATE USER "{quoted}"'.encode())
                    return
        except psycopg.OperationalError as exc:
            self._admin = None
            raise LoginFailed(f"FATAL: the database is unreachable: {exc}".strip()) from None
        if row is None:
            if login.password is None:
                raise LoginFailed(f'FATAL: user "{login.user}" does not exist')
            raise LoginFailed(f'FATAL: password authentication failed for user "{login.user}"')
        verifier, can_login = row
        if not can_login:
            raise LoginFailed(f'FATAL: user "{login.user}" is not permitted to log in')
        if login.password is None:
            return
        key = (login.user, str(verifier), hashlib.sha256(login.password.encode()).hexdigest())
        with self._lock:
            known = self._verified.get(key)
        if known is None:
            known = password_matches(verifier, login.user, login.password)
            with self._lock:
                self._verified[key] = known
        if not known:
            raise LoginFailed(f'FATAL: password authentication failed for user "{login.user}"')

    def close(self) -> None:
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None


class IdentityUnavailable(Exception):
    """STS could not tell who the caller is (an environmental error, not the caller's)."""
