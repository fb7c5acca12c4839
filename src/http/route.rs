//! Routes as one table. Each route is declared once, with its method, its
//! path and its handler; the handler takes the route's typed request (a
//! small struct read by one filter, [`FromRequest`]) and the context. The
//! `Allow` header of a 405 comes from the same table ([`Table::allowed`]).
//!
//! A path is literal segments and `{name}` segments, each holding a UUID:
//! `/boards/{board}/tasks/{task}`. Matching goes through warp's own path
//! filters, so a route matches exactly what a hand-written chain would.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::request::BodyLimit;
use crate::store::Caller;

/// The `{name}` segments of a matched path, in order.
#[derive(Debug, Clone, Default)]
pub struct Ids(Vec<(&'static str, Uuid)>);

impl Ids {
    /// The id in the `{name}` segment; a route reads only names its path has.
    pub fn get(&self, name: &str) -> Uuid {
        self.0
            .iter()
            .find(|(segment, _)| *segment == name)
            .map(|(_, id)| *id)
            .unwrap_or_else(|| panic!("the route's path has no {{{name}}}"))
    }
}

/// What the requests of a set of routes are read with: who asks (`caller`;
/// `reader` on routes that analytics tokens may read too) and how large a
/// body may be.
#[derive(Clone)]
pub struct Inputs {
    pub caller: BoxedFilter<(Caller,)>,
    pub reader: BoxedFilter<(Caller,)>,
    pub body_limit: BodyLimit,
}

impl Inputs {
    /// Routes that need no caller and no body.
    pub fn none() -> Self {
        let anonymous = warp::any().map(|| Caller::Anonymous).boxed();
        Inputs {
            caller: anonymous.clone(),
            reader: anonymous,
            body_limit: BodyLimit {
                bytes: 0,
                read_timeout: std::time::Duration::ZERO,
            },
        }
    }
}

/// A route's request, read by one filter once its path and method matched
/// (`matched` extracts the path's ids).
pub trait FromRequest: Sized + Send + 'static {
    fn filter(matched: BoxedFilter<(Ids,)>, inputs: &Inputs) -> BoxedFilter<(Self,)>;
}

/// Routes that read nothing from the request but their path.
impl FromRequest for () {
    fn filter(matched: BoxedFilter<(Ids,)>, _: &Inputs) -> BoxedFilter<(Self,)> {
        matched.map(|_| ()).boxed()
    }
}

impl FromRequest for Ids {
    fn filter(matched: BoxedFilter<(Ids,)>, _: &Inputs) -> BoxedFilter<(Self,)> {
        matched
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Id(&'static str),
}

/// A route's path, parsed from `/boards/{board}`.
#[derive(Debug, Clone)]
struct RoutePath(Vec<Segment>);

impl RoutePath {
    fn parse(path: &'static str) -> Self {
        let segments = path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| match segment.strip_prefix('{') {
                Some(name) => Segment::Id(name.trim_end_matches('}')),
                None => Segment::Literal(segment),
            })
            .collect();
        RoutePath(segments)
    }

    /// The filter that matches this path to its end and extracts its ids.
    fn filter(&self) -> BoxedFilter<(Ids,)> {
        let mut filter = warp::any().map(Ids::default).boxed();
        for segment in &self.0 {
            filter = match *segment {
                Segment::Literal(literal) => filter.and(warp::path(literal)).boxed(),
                Segment::Id(name) => filter
                    .and(warp::path::param::<Uuid>())
                    .map(move |mut ids: Ids, id| {
                        ids.0.push((name, id));
                        ids
                    })
                    .boxed(),
            };
        }
        filter.and(warp::path::end()).boxed()
    }

    /// Whether a request path is this path (an id segment must hold a UUID).
    fn matches(&self, path: &str) -> bool {
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        segments.len() == self.0.len()
            && self
                .0
                .iter()
                .zip(segments)
                .all(|(mine, theirs)| match mine {
                    Segment::Literal(literal) => *literal == theirs,
                    Segment::Id(_) => theirs.parse::<Uuid>().is_ok(),
                })
    }
}

fn method_filter(method: &Method) -> BoxedFilter<()> {
    match *method {
        Method::GET => warp::get().boxed(),
        Method::POST => warp::post().boxed(),
        Method::PATCH => warp::patch().boxed(),
        Method::DELETE => warp::delete().boxed(),
        Method::PUT => warp::put().boxed(),
        _ => unimplemented!("no route takes {method}"),
    }
}

/// A set of routes: what each answers to, and one filter serving them all.
#[derive(Default)]
pub struct Table {
    routes: Vec<(Method, RoutePath)>,
    filter: Option<BoxedFilter<(Response,)>>,
}

impl Table {
    /// Routes over the context `ctx`, reading requests with `inputs`.
    pub fn over<C: Clone + Send + Sync + 'static>(ctx: C, inputs: Inputs) -> Builder<C> {
        Builder {
            ctx,
            inputs,
            table: Table::default(),
        }
    }

    /// The routes of both tables.
    pub fn merge(mut self, other: Table) -> Table {
        self.routes.extend(other.routes);
        self.filter = match (self.filter, other.filter) {
            (Some(mine), Some(theirs)) => Some(mine.or(theirs).unify().boxed()),
            (mine, theirs) => mine.or(theirs),
        };
        self
    }

    /// The same routes under `/<prefix>`, after `guard` (which may refuse
    /// a request before any route sees it).
    pub fn mount(mut self, prefix: &'static str, guard: Option<BoxedFilter<()>>) -> Table {
        for (_, path) in &mut self.routes {
            path.0.insert(0, Segment::Literal(prefix));
        }
        let guard = guard.unwrap_or_else(|| warp::any().boxed());
        self.filter = self
            .filter
            .map(|filter| warp::path(prefix).and(guard).and(filter).boxed());
        self
    }

    /// One filter serving every route (a table without routes serves none).
    pub fn filter(&self) -> BoxedFilter<(Response,)> {
        match &self.filter {
            Some(filter) => filter.clone(),
            None => warp::any()
                .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
                .boxed(),
        }
    }

    /// The methods the routes at `path` take, as an `Allow` header lists
    /// them; None for a path no route has.
    pub fn allowed(&self, path: &str) -> Option<String> {
        let mut methods: Vec<&Method> = self
            .routes
            .iter()
            .filter(|(_, route)| route.matches(path))
            .map(|(method, _)| method)
            .collect();
        let rank = |method: &Method| {
            [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ]
            .iter()
            .position(|m| m == method)
        };
        methods.sort_by_key(|method| rank(method));
        methods.dedup();
        let names: Vec<&str> = methods.iter().map(|method| method.as_str()).collect();
        (!names.is_empty()).then(|| names.join(", "))
    }

    /// Adds `Allow` to a 405 answered at `path`: warp's `MethodNotAllowed`
    /// does not say which methods the path takes; this table does.
    pub fn with_allow_header(self: &Arc<Self>) -> impl Fn(FullPath, Response) -> Response + Clone {
        let table = Arc::clone(self);
        move |path: FullPath, mut response: Response| {
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                let allowed = table.allowed(path.as_str());
                if let Some(value) = allowed.and_then(|a| HeaderValue::from_str(&a).ok()) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
            }
            response
        }
    }
}

/// Declares the routes of a [`Table`] one by one.
pub struct Builder<C> {
    ctx: C,
    inputs: Inputs,
    table: Table,
}

impl<C: Clone + Send + Sync + 'static> Builder<C> {
    /// `method path` answered by `handler(request, ctx)`.
    pub fn route<R, H, F>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        R: FromRequest,
        H: Fn(R, C) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response, Rejection>> + Send + 'static,
    {
        let route = RoutePath::parse(path);
        let matched = route.filter().and(method_filter(&method)).boxed();
        let ctx = self.ctx.clone();
        let filter = R::filter(matched, &self.inputs)
            .and_then(move |request: R| handler.clone()(request, ctx.clone()))
            .boxed();
        let one = Table {
            routes: vec![(method, route)],
            filter: Some(filter),
        };
        self.table = std::mem::take(&mut self.table).merge(one);
        self
    }

    pub fn build(self) -> Table {
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(_: Ids, _: ()) -> Result<Response, Rejection> {
        Ok(Response::default())
    }

    fn table() -> Table {
        Table::over((), Inputs::none())
            .route(Method::GET, "/boards", answer)
            .route(Method::POST, "/boards", answer)
            .route(Method::DELETE, "/boards/{board}", answer)
            .route(Method::GET, "/boards/{board}", answer)
            .route(Method::GET, "/boards/{board}/tasks/{task}", answer)
            .build()
    }

    #[test]
    fn allow_lists_the_methods_of_the_routes_at_a_path() {
        let table = table().mount("quick", None);
        let id = Uuid::nil();
        assert_eq!(table.allowed("/quick/boards").as_deref(), Some("GET, POST"));
        assert_eq!(
            table.allowed("/quick/boards/").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(
            table.allowed(&format!("/quick/boards/{id}")).as_deref(),
            Some("GET, DELETE")
        );
        assert_eq!(
            table
                .allowed(&format!("/quick/boards/{id}/tasks/{id}"))
                .as_deref(),
            Some("GET")
        );
        assert_eq!(table.allowed("/quick/boards/not-a-uuid"), None);
        assert_eq!(table.allowed("/boards"), None);
    }

    #[tokio::test]
    async fn a_route_matches_its_method_and_whole_path_and_reads_its_ids() {
        let (board, task) = (Uuid::new_v4(), Uuid::new_v4());
        let filter = Table::over((), Inputs::none())
            .route(
                Method::GET,
                "/boards/{board}/tasks/{task}",
                |ids: Ids, ()| async move {
                    let text = format!("{} {}", ids.get("board"), ids.get("task"));
                    Ok(Response::new(text.into()))
                },
            )
            .build()
            .filter();
        let path = format!("/boards/{board}/tasks/{task}");
        let response = warp::test::request().path(&path).reply(&filter).await;
        assert_eq!(response.body(), &format!("{board} {task}"));
        let wrong_method = warp::test::request()
            .method("PATCH")
            .path(&path)
            .filter(&filter)
            .await;
        assert!(wrong_method.is_err());
        let longer = warp::test::request()
            .path(&format!("{path}/more"))
            .filter(&filter)
            .await;
        assert!(longer.err().is_some_and(|r| r.is_not_found()));
    }
}
