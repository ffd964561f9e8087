"""Words the console shows that come from data (states, roles, reasons) or from the server's messages.

Each is marked with N_ so that the catalog test finds it and insists on its translation; pages pass
them through the catalog when they show them. Messages with {placeholders} are the server's own
(errors, waiting reasons): the catalog translates them with their values carried over.
"""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "translate later"
    """Mark a message for translation where it is defined; it is translated where it is shown."""
    return message


ROLES = {"admin": N_("admin"), "operator": N_("operator"), "viewer": N_("viewer")}
STATES = [
    N_("pending"),
    N_("notified"),
    N_("downloading"),
    N_("upgrading"),
    N_("succeeded"),
    N_("failed"),
    N_("canceled"),
    N_("skipped"),
    N_("scheduled"),
    N_("running"),
    N_("paused"),
    N_("finished"),
    N_("aborted"),
    N_("unverified"),
    N_("verifying"),
    N_("verified"),
    N_("enabled"),
    N_("disabled"),
    N_("online"),
    N_("offline"),
]
FAILURE_REASONS = [
    N_("upgrade failed"),
    N_("download failed"),
    N_("verification failed"),
    N_("flashing failed"),
    N_("version mismatch"),
    N_("timeout"),
    N_("unknown"),
]

# The server's messages the console shows (errors of services, reasons a campaign waits or stopped,
# what an attempt's last step says); values in braces are carried into the translation.
SERVER_MESSAGES = [
    # users and sign-in
    N_("too many failed sign-ins: try again in {seconds} seconds"),
    N_("a user named {name} exists already"),
    N_("{name} is the last enabled admin: make another user admin first"),
    N_("the current password is wrong"),
    N_("a password has {min} to {max} characters"),
    N_("no user {id}"),
    N_("no token {id}"),
    # products, modules, devices
    N_("a product named {name} already exists"),
    N_("product {id} does not exist"),
    N_("no product has the key {key}"),
    N_("{name} is an alias of the default module"),
    N_("product {id} already has a module {name}"),
    N_("property {property} already carries the version of module {name}"),
    N_("{word} already names module {name} of product {id}"),
    N_("{word} always names the default module"),
    N_("module {id} does not exist"),
    N_("product {id} has no module {name} (by name or alias); create it first"),
    N_("product {id} already has a device named {name}"),
    N_("a sub-device's address needs the gateway_id of its gateway"),
    N_("a sub-device needs the address its gateway names it by"),
    N_("device {id} does not exist"),
    N_("device {id} is itself a sub-device and cannot be a gateway"),
    N_("gateway {id} already has a sub-device at {address}"),
    N_("device {id} was deleted on {when} UTC"),
    N_("device {id} is the gateway of {count} sub-device(s); delete them first"),
    N_("the default module is every product's whole-device firmware; it cannot be deleted"),
    N_("package {id} is made for module {name}: delete its packages first"),
    N_("product {id} has {count} device(s) in service; delete them first"),
    N_("campaign {id} ({name}, {state}) is open: cancel it first"),
    # bulk import
    N_("{count} row(s) are wrong (rows {rows}); nothing was imported"),
    N_("the import holds no device"),
    N_("an import holds at most {count} devices; split the file"),
    N_("the import is not UTF-8 text"),
    N_("the first line names the columns, among {columns} (name required, each once); got {header}"),
    N_("{cells} cells, but the header names {columns} columns"),
    N_("device {id} has this name"),
    N_("row {row} has this name too"),
    N_("a sub-device's address needs its gateway"),
    N_("a sub-device needs the address its gateway uses"),
    N_("row {row} is a sub-device itself"),
    N_("no device {name} in service"),
    N_("device {id} is a sub-device itself"),
    N_("unexpected column"),
    N_("Field required"),
    N_("String should match pattern {pattern}"),
    # packages and versions
    N_("package {id} does not exist"),
    N_(
        "version {version} of module {module} already exists (package {id}); packages are immutable, "
        "create a new version instead"
    ),
    N_("a package needs at least one file part named 'file'"),
    N_("{name} is larger than the limit of {size} MB"),
    N_("{name} has an extension that is not allowed; allowed: {extensions}"),
    N_("a package has at most {count} files"),
    N_("the client went away before the upload was complete"),
    N_("a version must not be empty"),
    N_("a version is at most {count} characters"),
    N_("{version} is not a version: use numbers separated by dots, like 1.2.3 or v1.0.1"),
    N_("a diff package must name the version(s) it applies to"),
    N_("only a diff package has a source version"),
    N_("{value} is not a file extension"),
    # campaigns
    N_("package {id} is disabled"),
    N_(
        "package {id} must pass verification before it is rolled out (verification is {state}); "
        "run a verify campaign on a few devices first"
    ),
    N_("https downloads need SKYLIFT_PUBLIC_HTTPS_URL to be configured"),
    N_("no device matches the campaign's targets"),
    N_("devices {ids} do not exist in product {id}"),
    N_("devices {ids} are not in campaign {id}"),
    N_("campaign {id} is {state}"),
    N_("campaign {id} does not exist"),
    N_("devices {ids} have not failed or been canceled"),
    N_("campaign {id} is already {state}"),
    N_("only a scheduled or running campaign can be paused; this one is {state}"),
    N_("only a paused campaign can be resumed; this one is {state}"),
    N_("this campaign waits for approval of its next group: approve it instead"),
    N_("package {id} is disabled: enable it first"),
    N_("there is no group to approve in a {state} campaign"),
    N_("every group has already started"),
    N_("name device_ids, tags, percent, or all: true"),
    N_("{zone} is not a time zone"),
    N_("the time is out of range once converted to UTC"),
    N_("{cron} is not a cron expression of five fields: minute hour day month weekday"),
    N_(
        "{cron} is not a cron expression of five fields: minute hour day month weekday "
        "(seconds are not supported: drop the first field)"
    ),
    N_("must be after start_at"),
    N_("give exactly one of percent or count"),
    N_("groups are increasing cumulative percents in (0, 100]"),
    N_("the last group must be 100 (use target.percent to reach only part of the fleet)"),
    N_("give either device_ids or target, not both"),
    N_("a verify campaign names its devices"),
    N_("no device named {names} in the package's product"),
    N_("{line} is not key=value"),
    # why a campaign waits or stopped, and what an attempt's last step says
    N_("waiting for its start time"),
    N_("waiting for its next scheduled run"),
    N_("outside its window {window}"),
    N_("pacing: at most {count} notices a minute"),
    N_("waiting for approval to start group {group} of {groups}"),
    N_("paused by an operator"),
    N_("package disabled"),
    N_("error threshold reached: {failed} devices failed (limit {limit})"),
    N_("error threshold reached: {failed} of {finished} finished devices failed ({share})"),
    N_("already on {version}"),
    N_("not on a source version"),
    N_("busy in campaign {id}"),
    N_("superseded by campaign {id}"),
    N_("restarted on {version}"),
    N_("device deleted"),
]
