"""SQLAlchemy models, one module per aggregate. Importing this package registers every table."""
from models.audit_seals import AuditSeal, AuditVerification  # noqa: F401
from models.base import utcnow  # noqa: F401
from models.campaigns import Campaign, JobError, MessageError  # noqa: F401
from models.contributors import CampaignContributor  # noqa: F401
from models.dispatch import DailySent, DispatchBatch, DispatchState, HourlyStat, PendingReport, SystemState  # noqa: F401
from models.evidence import EvidencePack  # noqa: F401
from models.exports import Export  # noqa: F401
from models.files import FileChunk, StoredFile  # noqa: F401
from models.invitations import Invitation, JoinRequest  # noqa: F401
from models.outbox import OutboxMail  # noqa: F401
from models.recipients import Recipient, StopListEntry, Upload  # noqa: F401
from models.security import AnonymisedCampaign, RecoveryCode, UserSession, UserTotp, WorkspaceGdpr  # noqa: F401
from models.senders import SenderName, SenderRevision  # noqa: F401
from models.settings import SystemSetting  # noqa: F401
from models.tokens import ApiToken  # noqa: F401
from models.users import User  # noqa: F401
from models.workspaces import ROLES, Membership, Workspace  # noqa: F401
