//! Data intake shared by every kernel: NumPy arrays and Arrow data, borrowed.
//!
//! NumPy arrays arrive as read-only views with their own strides (C or F
//! order, slices, memmaps): nothing is copied. Arrow data arrives through the
//! PyCapsule interface (pyarrow, polars, pandas); float columns without nulls
//! are handed to Python as NumPy views over the Arrow buffers, again without
//! a copy. Other numeric columns are converted once to float64 (nulls become
//! NaN); strings, dictionaries and booleans become dense category codes.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatchReader};
use arrow_buffer::ScalarBuffer;
use arrow_schema::DataType;
use ferromine_core::Columns;
use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3_arrow::input::{AnyArray, AnyRecordBatch};
use rustc_hash::FxHashMap;

/// Numeric features as Python hands them over: one 2-D array, or per
/// feature a list of 1-D chunks. Extraction is dtype-exact: Python casts
/// anything that is not float32 or float64 before calling.
#[derive(FromPyObject)]
pub enum Numeric<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
    ChunksF64(Vec<Vec<PyReadonlyArray1<'py, f64>>>),
    ChunksF32(Vec<Vec<PyReadonlyArray1<'py, f32>>>),
}

/// Borrowed views of [`Numeric`], ready to cross into `py.detach`.
pub enum NumericView<'a> {
    F64(Columns<'a, f64>),
    F32(Columns<'a, f32>),
}

impl<'py> Numeric<'py> {
    pub fn view(&self) -> PyResult<NumericView<'_>> {
        fn chunked<'a, T: numpy::Element + ferromine_core::columns::Value>(
            cols: &'a [Vec<PyReadonlyArray1<'_, T>>],
        ) -> PyResult<Columns<'a, T>> {
            let views: Vec<Vec<ArrayView1<'a, T>>> = cols
                .iter()
                .map(|chunks| chunks.iter().map(|c| c.as_array()).collect())
                .collect();
            Columns::chunked(views).map_err(crate::errors::to_pyerr)
        }
        Ok(match self {
            Numeric::F64(a) => NumericView::F64(Columns::Matrix(a.as_array())),
            Numeric::F32(a) => NumericView::F32(Columns::Matrix(a.as_array())),
            Numeric::ChunksF64(c) => NumericView::F64(chunked(c)?),
            Numeric::ChunksF32(c) => NumericView::F32(chunked(c)?),
        })
    }
}

/// Owns an Arrow buffer for as long as a NumPy array borrows it.
#[pyclass(frozen, module = "ferromine._core")]
struct ArrowBufferOwner {
    _keep: arrow_buffer::Buffer,
}

/// A read-only NumPy view over an Arrow values buffer, no copy.
fn numpy_view<'py, T: numpy::Element + arrow_buffer::ArrowNativeType>(
    py: Python<'py>,
    values: &ScalarBuffer<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let owner = Bound::new(
        py,
        ArrowBufferOwner {
            _keep: values.inner().clone(),
        },
    )?;
    let view = ArrayView1::from(&values[..]);
    // SAFETY: the view points into `owner`'s buffer, which is immutable and
    // lives as long as the NumPy array keeps `owner` as its base object.
    let array = unsafe { PyArray1::borrow_from_array(&view, owner.into_any()) };
    array.call_method1("setflags", (false,))?;
    Ok(array.into_any())
}

fn is_float(dt: &DataType) -> bool {
    matches!(dt, DataType::Float32 | DataType::Float64)
}

fn is_numeric(dt: &DataType) -> bool {
    dt.is_integer()
        || matches!(
            dt,
            DataType::Float16 | DataType::Float32 | DataType::Float64
        )
}

fn is_stringish(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// One chunk of a numeric column as a NumPy array: a view when the chunk is
/// float32/float64 without nulls, else a float64 copy with NaN for null.
fn numeric_chunk<'py>(py: Python<'py>, array: &ArrayRef) -> PyResult<Bound<'py, PyAny>> {
    if array.null_count() == 0 {
        match array.data_type() {
            DataType::Float64 => {
                return numpy_view(py, array.as_primitive::<Float64Type>().values())
            }
            DataType::Float32 => {
                return numpy_view(py, array.as_primitive::<Float32Type>().values())
            }
            _ => {}
        }
    }
    let cast = arrow_cast_f64(array)?;
    let out: Vec<f64> = (0..cast.len())
        .map(|i| {
            if cast.is_null(i) {
                f64::NAN
            } else {
                cast.value(i)
            }
        })
        .collect();
    Ok(out.into_pyarray(py).into_any())
}

fn arrow_cast_f64(array: &ArrayRef) -> PyResult<arrow_array::Float64Array> {
    macro_rules! widen {
        ($t:ty) => {
            Ok(array
                .as_primitive::<$t>()
                .unary_opt::<_, Float64Type>(|v| Some(v as f64)))
        };
    }
    match array.data_type() {
        DataType::Float64 => Ok(array.as_primitive::<Float64Type>().clone()),
        DataType::Float32 => widen!(Float32Type),
        DataType::Float16 => Ok(array
            .as_primitive::<Float16Type>()
            .unary_opt::<_, Float64Type>(|v| Some(v.to_f64()))),
        DataType::Int8 => widen!(Int8Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int64 => widen!(Int64Type),
        DataType::UInt8 => widen!(UInt8Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt64 => widen!(UInt64Type),
        other => Err(PyTypeError::new_err(format!(
            "cannot read Arrow type {other} as numbers"
        ))),
    }
}

/// Dense codes for a categorical column: first-seen order, -1 for null.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<String, i32>,
    names: Vec<String>,
}

impl Interner {
    fn code(&mut self, s: &str) -> i32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as i32;
        self.ids.insert(s.to_owned(), id);
        self.names.push(s.to_owned());
        id
    }

    fn push_strings(&mut self, array: &dyn Array, codes: &mut Vec<i32>) -> PyResult<()> {
        macro_rules! each {
            ($arr:expr) => {{
                let a = $arr;
                for i in 0..a.len() {
                    codes.push(if a.is_null(i) {
                        -1
                    } else {
                        self.code(a.value(i))
                    });
                }
            }};
        }
        match array.data_type() {
            DataType::Utf8 => each!(array.as_string::<i32>()),
            DataType::LargeUtf8 => each!(array.as_string::<i64>()),
            DataType::Utf8View => each!(array.as_string_view()),
            DataType::Dictionary(_, values) if is_stringish(values) => {
                let dict = array.as_any_dictionary();
                let mut local: Vec<i32> = Vec::new();
                self.push_strings(dict.values().as_ref(), &mut local)?;
                // Null keys get an arbitrary in-range key: check nulls first.
                let keys = dict.normalized_keys();
                for (i, &k) in keys.iter().enumerate() {
                    codes.push(if array.is_null(i) {
                        -1
                    } else {
                        local.get(k).copied().unwrap_or(-1)
                    });
                }
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "cannot read Arrow type {other} as categories"
                )))
            }
        }
        Ok(())
    }
}

/// One column of an Arrow table, read.
fn read_column<'py>(
    py: Python<'py>,
    name: &str,
    dt: &DataType,
    chunks: &[ArrayRef],
) -> PyResult<Bound<'py, PyAny>> {
    if is_numeric(dt) {
        let list = PyList::empty(py);
        for c in chunks {
            list.append(numeric_chunk(py, c)?)?;
        }
        let kind = if chunks
            .iter()
            .all(|c| c.null_count() == 0 && is_float(c.data_type()))
        {
            "float"
        } else {
            "float-converted"
        };
        return Ok((name, kind, list).into_pyobject(py)?.into_any());
    }
    let mut codes: Vec<i32> = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    match dt {
        DataType::Boolean => {
            for c in chunks {
                let b: &BooleanArray = c.as_boolean();
                for i in 0..b.len() {
                    codes.push(if b.is_null(i) { -1 } else { b.value(i) as i32 });
                }
            }
            let cats = PyList::new(py, [false, true])?;
            return Ok((name, "bool", (codes.into_pyarray(py), cats))
                .into_pyobject(py)?
                .into_any());
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            let mut interner = Interner::default();
            for c in chunks {
                interner
                    .push_strings(c.as_ref(), &mut codes)
                    .map_err(|e| PyTypeError::new_err(format!("column '{name}': {e}")))?;
            }
            let cats = PyList::new(py, &interner.names)?;
            Ok((name, "category", (codes.into_pyarray(py), cats))
                .into_pyobject(py)?
                .into_any())
        }
        other => Err(PyTypeError::new_err(format!(
            "column '{name}' has Arrow type {other}, which ferromine cannot read; \
             convert it to a number, string or boolean column first"
        ))),
    }
}

/// Read any Arrow tabular object (pyarrow Table/RecordBatch/RecordBatchReader,
/// polars DataFrame, pandas DataFrame) or single column (pyarrow Array or
/// ChunkedArray, polars Series) into a list of `(name, kind, payload)`:
/// kind "float" (payload: NumPy views, one per chunk, no copy),
/// "float-converted" (float64 copies, nulls as NaN), "category" or "bool"
/// (payload: int32 codes with -1 for null, and the category values).
#[pyfunction]
pub fn arrow_columns<'py>(
    py: Python<'py>,
    data: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    if let Ok(batches) = data.extract::<AnyRecordBatch>() {
        let reader = batches.into_reader()?;
        let schema = reader.schema();
        let mut per_column: Vec<Vec<ArrayRef>> = vec![Vec::new(); schema.fields().len()];
        for batch in reader {
            let batch = batch
                .map_err(|e| PyValueError::new_err(format!("could not read Arrow data: {e}")))?;
            for (j, col) in batch.columns().iter().enumerate() {
                per_column[j].push(col.clone());
            }
        }
        for (field, chunks) in schema.fields().iter().zip(&per_column) {
            out.append(read_column(py, field.name(), field.data_type(), chunks)?)?;
        }
        return Ok(out);
    }
    let array =
        data.extract::<AnyArray>().map_err(|_| {
            PyTypeError::new_err(format!(
            "expected Arrow data (an object with __arrow_c_stream__ or __arrow_c_array__), got {}",
            data.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
        })?;
    let reader = array.into_reader()?;
    let field = reader.field();
    let chunks: Vec<ArrayRef> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| PyValueError::new_err(format!("could not read Arrow data: {e}")))?;
    out.append(read_column(py, field.name(), field.data_type(), &chunks)?)?;
    Ok(out)
}
