//! What every request handler may reach: the stores, auth, settings and
//! dependencies, built by [`crate::app::Application::build`].

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::connections::ConnectionCap;
use super::ws;
use crate::auth::Auth;
use crate::store::users::UserDirectory;
use crate::store::BoardStore;
use streamboard_core::dependencies::Dependencies;
use streamboard_core::settings::Settings;

pub struct AppState {
    pub settings: Settings,
    pub quick: Arc<dyn BoardStore>,
    pub quick_gateway: Arc<ws::Gateway>,
    /// The event-sourced mode, when Redis and PostgreSQL are configured.
    pub api: Option<ApiState>,
    pub dependencies: Dependencies,
    pub metrics: PrometheusHandle,
}

pub struct ApiState {
    pub store: Arc<dyn BoardStore>,
    pub auth: Arc<Auth>,
    pub users: deadpool_postgres::Pool,
    /// Names the members that responses show.
    pub directory: Arc<dyn UserDirectory>,
    pub gateway: Arc<ws::Gateway>,
    /// The cap SSE tails share with the WebSocket gateways.
    pub connections: Arc<ConnectionCap>,
}
