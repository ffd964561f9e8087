"""The long-lived collaborators of one running Skylift process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skylift.config import Settings
from skylift.db.session import Database
from skylift.kit.clock import Clock, SystemClock
from skylift.kit.signing import UrlSigner
from skylift.packages.ports import PackageSwitched, VerificationOf
from skylift.packages.storage import LocalStorage

if TYPE_CHECKING:
    from skylift.campaigns.engine import RolloutEngine
    from skylift.devices.hub import DeviceHub


@dataclass
class AppContext:
    settings: Settings
    database: Database
    storage: LocalStorage
    signer: UrlSigner
    admin_token: str
    clock: Clock = field(default_factory=SystemClock)
    verification_of: VerificationOf | None = field(default=None)
    package_switched: PackageSwitched | None = field(default=None)
    hub: DeviceHub | None = field(default=None)
    engine: RolloutEngine | None = field(default=None)

    def wake_engine(self, product_id: int | None = None) -> None:
        """The rollout engine looks at the product's campaigns soon (None: at every campaign)."""
        if self.engine is not None:
            self.engine.wake(product_id)

    @property
    def device_hub(self) -> DeviceHub:
        if self.hub is None:
            raise RuntimeError("the device hub is not running")
        return self.hub
