"""Every error fundx raises, grouped by what the caller should do about it.

Retry decisions read the type, never the message. Every error carries two messages:
``action`` for the person who must act ("police token rejected: renew FUNDX_POLICE_CLIENT_SECRET")
and ``str(error)`` for the log. Neither may contain a record's content: name the feed, the row
number, the column, the setting; show identity numbers only masked (fundx.core.identity.mask_id).
Prefect pickles failed-flow exceptions into its storage, so this rule is what keeps personal data
out of it.
"""

from __future__ import annotations


class FundxError(Exception):
    """Base of all fundx errors. ``feed`` names the feed concerned, when there is one."""

    #: what a person should do, in one line; subclasses give a default
    default_action = "see the log line above for details"

    def __init__(self, message: str, *, feed: str | None = None, action: str | None = None):
        self.feed = feed
        self.action = action or self.default_action
        prefix = f"{feed}: " if feed and not message.startswith(f"{feed}:") else ""
        super().__init__(prefix + message)

    @property
    def kind(self) -> str:
        """The error's type name, as recorded in the ledger."""
        return type(self).__name__

    def __reduce__(self):  # keep feed/action through pickling (Prefect, multiprocessing)
        return (_rebuild, (type(self), str(self), self.feed, self.action))


def _rebuild(cls, message, feed, action):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.feed, err.action = feed, action
    return err


class TransientError(FundxError):
    """May succeed if tried again later: connection errors, timeouts, 429, 5xx, a truncated page."""

    default_action = "retry later; if it persists, ask the agency whether its service is degraded"
    #: seconds the agency asked us to wait; a class default so an unpickled error still has it
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The agency answered 429; ``retry_after`` holds its Retry-After in seconds when it sent one."""


class IncompletePull(TransientError):
    """A pull ended without every row the agency announced (truncated body, short page, missing done-file)."""


class DeadlineExceeded(TransientError):
    """A pull ran past its overall deadline (FUNDX_PULL_DEADLINE): the agency answers too slowly.

    Transient — the next night may find the agency well — but never retried within the pull whose time
    is up (fundx.core.retry.Retrier), so that one slow agency cannot hold back the night's other feeds.
    """

    default_action = ("ask the agency whether its service is degraded; if the feed really needs longer, "
                      "raise FUNDX_PULL_DEADLINE")


class PermanentError(FundxError):
    """Will fail again until a person changes something; stops this feed only."""


class ConfigurationError(PermanentError):
    """A setting or feed config is missing or wrong; the message names the key."""

    default_action = "fix the named setting and run again"


class AuthError(PermanentError):
    """Credentials were rejected even after a refresh."""

    default_action = "renew the feed's credentials"


class SourceSchemaError(PermanentError):
    """The agency's data no longer has the shape its contract says (a renamed or missing column)."""

    default_action = "ask the agency about the change, or update the feed's contract"


class NotFoundError(PermanentError):
    """The endpoint, table, view or drop folder is not there."""

    default_action = "check the feed's URL, path or relation name"


class DataError(PermanentError):
    """The data itself is unusable as a whole (undecodable file, wrong type in a column)."""

    default_action = "ask the agency to resend the file or fix the view"


class BatchHeld(DataError):
    """The batch broke its contract's batch policy (too many failing rows, a batch rule) and was held
    back whole: sealed into the stewards' quarantine, recorded, and not handed to its stage."""

    default_action = "a data steward decides: fundx failures show BATCH, then fundx failures release|reject BATCH"


class DecisionError(PermanentError):
    """A steward's decision cannot be taken as asked (rows decided already, no reason, unknown batch)."""

    default_action = "see fundx failures show BATCH for the rows still open"


class InternalError(PermanentError):
    """A fault in fundx itself; the message names the exception type and where, never its text."""

    default_action = "report it to the fundx engineers with the run's log"


class CertificateError(PermanentError):
    """A certificate cannot be used: not issued by the trusted CA, expired, revoked, or the wrong usage.

    The message names the certificate's subject CN and the reason.
    """

    default_action = "replace the named certificate, or refresh the CRL (development: fundx keys init)"


class SealError(PermanentError):
    """A sealed part was refused; the message names the batch and the reason, never its content."""

    default_action = "do not use the part; ask the exchange to seal and send it again"


class TamperedError(SealError):
    """A sealed part was altered or damaged: GCM tag, signature or payload digest does not match."""


class WrongRecipientError(SealError):
    """A sealed part was not encrypted for the key that tried to open it."""

    default_action = "deliver the part to the stage it was sealed for, or check the stage's key and certificate"


class UnknownSignerError(SealError):
    """A sealed part was signed by a certificate that does not chain to the trusted CA."""

    default_action = "check the trusted CA configured for this stage; refuse parts from unknown signers"


class ManifestError(SealError):
    """A sealed part's manifest is missing, unreadable, or names another recipient, batch or night."""


class SymlinkError(SealError):
    """An inbox entry — a batch folder, a part, READY or an acknowledgement — is a symbolic link (or not
    a regular file). It is never followed: nothing it points to is read or copied, and the batch is refused."""

    default_action = "remove the link and find out who put it into the inbox; the exchange and the stages never write links"


class ReplayError(SealError):
    """A batch the stage has received already (or a part of one, under another name) came again."""

    default_action = "nothing to do for the stage; find out who put the old batch back into the inbox"


class UnsupportedSealError(SealError):
    """A sealed part uses an algorithm or structure outside fundx's profile (AES-256-GCM, RSA-OAEP-SHA-256)."""

    default_action = "seal with AES-256-GCM and RSA-OAEP (SHA-256), signed with SHA-256 and signed attributes"


class FeedBusy(TransientError):
    """Another run is exchanging this feed right now; two at once could deliver the same rows twice."""

    default_action = "wait for the other run of the feed to finish, then run it again"


class HandoffPending(TransientError):
    """A batch was delivered and recorded, but its READY marker could not be written yet.

    The pull and the watermark are recorded; the next run of the feed writes READY before anything else.
    """

    default_action = "fix the inbox (space, permissions) and run the feed again; its batch is completed first"


class DeliveryLost(PermanentError):
    """A batch recorded as delivered has lost sealed parts before its READY marker was written."""

    default_action = "backfill the batch's window (fundx backfill FEED --from ... --to ...) to deliver it again"


class NightFailed(FundxError):
    """A night ended with one or more feeds failed; the message names them and why."""

    default_action = "run `fundx status` and fix the feeds named; a rerun pulls only what is missing"


def content_free(error: BaseException) -> FundxError:
    """A fundx error as it is, anything else as an InternalError naming only its type and place.

    The original message of a foreign exception may quote a value from a record (pyarrow, pandas
    and database drivers do): it is dropped on purpose.
    """
    if isinstance(error, FundxError):
        return error
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
    return InternalError(f"unexpected {type(error).__name__} at {where}")


def is_transient(error: BaseException) -> bool:
    """True if trying again later may help."""
    return isinstance(error, TransientError)
