//! The dispatcher's metric names; the projector registers them with its own
//! (docs/OPERATIONS.md lists them all).

pub const WEBHOOK_DELIVERIES_TOTAL: &str = "streamboard_projector_webhook_deliveries_total";
pub const WEBHOOK_DELIVERY_DURATION_SECONDS: &str =
    "streamboard_projector_webhook_delivery_duration_seconds";
pub const WEBHOOK_BACKLOG_EVENTS: &str = "streamboard_projector_webhook_backlog_events";
pub const WEBHOOKS_DISABLED: &str = "streamboard_projector_webhooks_disabled";

/// The `outcome` label of [`WEBHOOK_DELIVERIES_TOTAL`].
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "rejected", "failed"];
