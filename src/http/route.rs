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
use warp::path::{FullPath, Peek};
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

    /// The filter that matches this path to its end and extracts its ids:
    /// one step over the unmatched path (a filter per segment would box a
    /// future per segment, for every route a request is tried against).
    fn filter(&self) -> BoxedFilter<(Ids,)> {
        let path = self.clone();
        warp::path::peek()
            .and_then(move |rest: Peek| {
                let ids = path.ids(rest.as_str()).ok_or_else(warp::reject::not_found);
                std::future::ready(ids)
            })
            .boxed()
    }

    /// The ids of `rest` (a path without its leading `/`) if it is this
    /// path, segment by segment as warp's `path`, `param` and `end` filters
    /// read one: an empty segment matches nothing, one trailing `/` is
    /// allowed, and an id segment must hold a UUID.
    fn ids(&self, rest: &str) -> Option<Ids> {
        let mut ids = Ids::default();
        self.walk(rest, |name, id| ids.0.push((name, id)))
            .then_some(ids)
    }

    /// Whether `rest` is this path, each id handed to `on_id`.
    fn walk(&self, mut rest: &str, mut on_id: impl FnMut(&'static str, Uuid)) -> bool {
        for segment in &self.0 {
            let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
            match *segment {
                Segment::Literal(literal) if head == literal => {}
                Segment::Id(name) if !head.is_empty() => match head.parse() {
                    Ok(id) => on_id(name, id),
                    Err(_) => return false,
                },
                _ => return false,
            }
            rest = tail;
        }
        rest.is_empty()
    }

    /// Whether a request path (with its leading `/`) is this path.
    fn matches(&self, path: &str) -> bool {
        self.walk(path.strip_prefix('/').unwrap_or(path), |_, _| {})
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
            routes: Vec::new(),
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
    /// Each route and its filter, in the order declared.
    routes: Vec<(Method, RoutePath, BoxedFilter<(Response,)>)>,
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
        self.routes.push((method, route, filter));
        self
    }

    pub fn build(self) -> Table {
        Table {
            filter: (!self.routes.is_empty()).then(|| dispatch(&self.routes)),
            routes: self
                .routes
                .into_iter()
                .map(|(method, path, _)| (method, path))
                .collect(),
        }
    }
}

/// The routes as one filter: a balanced tree of `or`s, each subtree behind
/// a check of the request's path against its routes' paths. warp allocates
/// the future of every boxed filter it calls, so a chain of routes tried in
/// turn cost an allocation or more per route before the one that matched;
/// here a request goes down to the routes of its own path only. Routes of
/// one path keep their order, so a wrong method still answers 405.
fn dispatch(routes: &[(Method, RoutePath, BoxedFilter<(Response,)>)]) -> BoxedFilter<(Response,)> {
    if let [(_, _, filter)] = routes {
        return filter.clone();
    }
    let paths: Arc<[RoutePath]> = routes.iter().map(|(_, path, _)| path.clone()).collect();
    let (first, second) = routes.split_at(routes.len() / 2);
    warp::path::peek()
        .and_then(move |rest: Peek| {
            let ours = paths.iter().any(|path| path.walk(rest.as_str(), |_, _| {}));
            std::future::ready(if ours {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            })
        })
        .untuple_one()
        .and(dispatch(first).or(dispatch(second)).unify())
        .boxed()
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

    #[tokio::test]
    async fn a_path_is_matched_as_warps_own_path_filters_match_it() {
        let id = Uuid::new_v4();
        let ours = RoutePath::parse("/boards/{board}/tasks").filter();
        let warps = warp::path("boards")
            .and(warp::path::param::<Uuid>())
            .and(warp::path("tasks"))
            .and(warp::path::end());
        for path in [
            format!("/boards/{id}/tasks"),
            format!("/boards/{id}/tasks/"),
            format!("/boards/{id}/tasks//"),
            format!("/boards//{id}/tasks"),
            format!("/boards/{id}/tasks/x"),
            format!("/boards/{id}"),
            "/boards/not-a-uuid/tasks".to_owned(),
            "/boards//tasks".to_owned(),
            "/".to_owned(),
        ] {
            let mine = warp::test::request().path(&path).filter(&ours).await;
            let theirs = warp::test::request().path(&path).filter(&warps).await;
            assert_eq!(mine.is_ok(), theirs.is_ok(), "{path}");
            if let Ok(ids) = mine {
                assert_eq!(ids.get("board"), theirs.unwrap(), "{path}");
            }
        }
    }

    #[tokio::test]
    async fn every_route_of_a_table_is_reached_and_a_wrong_method_is_405() {
        let filter = table().filter();
        let id = Uuid::new_v4();
        for (method, path) in [
            ("GET", "/boards".to_owned()),
            ("POST", "/boards".to_owned()),
            ("DELETE", format!("/boards/{id}")),
            ("GET", format!("/boards/{id}")),
            ("GET", format!("/boards/{id}/tasks/{id}")),
        ] {
            let answer = warp::test::request()
                .method(method)
                .path(&path)
                .filter(&filter)
                .await;
            assert!(answer.is_ok(), "{method} {path}");
        }
        let wrong_method = warp::test::request()
            .method("PATCH")
            .path(&format!("/boards/{id}"))
            .filter(&filter)
            .await;
        let Err(rejection) = wrong_method else {
            panic!("PATCH is no route")
        };
        assert!(
            rejection.find::<warp::reject::MethodNotAllowed>().is_some(),
            "{rejection:?}"
        );
        let unknown = warp::test::request()
            .path(&format!("/boards/{id}/tasks"))
            .filter(&filter)
            .await;
        assert!(unknown.err().is_some_and(|r| r.is_not_found()));
    }
}
