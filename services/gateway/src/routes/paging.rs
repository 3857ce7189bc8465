//! Paging: `?page=1&size=20`, answered as `{index, max_size, total_pages, total, items}`.

use serde::{Deserialize, Serialize};

/// The largest page size accepted.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Paging parameters.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Items per page (default 20, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub size: Option<u64>,
}

impl PageParams {
    /// `(offset, limit)`, or a 400 for out-of-range values.
    pub fn window(&self) -> Result<(u64, u64), crate::errors::ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.size.unwrap_or(20);
        if page == 0 {
            return Err(crate::errors::ApiError::bad_request("page starts at 1"));
        }
        if size == 0 || size > MAX_PAGE_SIZE {
            return Err(crate::errors::ApiError::bad_request(format!(
                "size must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(((page - 1).saturating_mul(size), size))
    }
}

/// One page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// This page's number (1-based).
    pub index: u64,
    /// The page size asked for.
    pub max_size: u64,
    /// How many pages there are.
    pub total_pages: u64,
    /// How many items match in all.
    pub total: u64,
    /// The items.
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// Builds a page from a window and the total.
    pub fn new(items: Vec<T>, offset: u64, size: u64, total: u64) -> Self {
        Self {
            index: offset / size + 1,
            max_size: size,
            total_pages: total.div_ceil(size),
            total,
            items,
        }
    }
}
