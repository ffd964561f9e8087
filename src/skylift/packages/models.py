from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skylift.db.base import Base, TimestampMixin, UtcDateTime, unique_in_service


class Package(TimestampMixin, Base):
    __tablename__ = "packages"
    # A full image has source_version "" so the index also holds where NULLs would be distinct. A deleted
    # package stays for the campaigns that used it, and its version may be uploaded again.
    __table_args__ = (
        unique_in_service(
            "uq_packages_version_in_service", "product_id", "module", "version", "type", "source_version"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    module: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(8))
    # The versions a diff applies to, comma-separated ("1.0.0,1.0.1"); "" for a full image.
    source_version: Mapped[str] = mapped_column(String(255), default="")
    sign_method: Mapped[str] = mapped_column(String(8))
    verify_required: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Deleted (DELETE): its files are gone; the row stays for the closed campaigns that name it.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    files: Mapped[list[PackageFile]] = relationship(
        back_populates="package", order_by="PackageFile.position", cascade="all, delete-orphan"
    )


class PackageFile(Base):
    __tablename__ = "package_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))

    package: Mapped[Package] = relationship(back_populates="files")
