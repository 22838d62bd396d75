//! `maskrcnn._maskrcnn`: the Python extension. Models are loaded and run through the same library
//! functions as the command line; `detect`, `train`, `evaluate` and the other commands run the
//! command line's own parse-and-run entry in-process, with progress and Ctrl-C routed through
//! [`maskrcnn::hooks`]. The Python layer (`maskrcnn/__init__.py`) turns keyword arguments into
//! the command line's flags.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Mutex;

use maskrcnn::hooks::CommandHooks;
use maskrcnn::train::progress::TrainProgress;
use maskrcnn::transform::ImageChw;
use maskrcnn::MaskRcnn;
use maskrcnn_data::scaling::SampleType;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// How an error of the engine is raised in Python (the classes live in `maskrcnn._errors`).
#[derive(Clone, Copy)]
enum ErrorKind {
    /// `MaskRcnnError` (a RuntimeError).
    Failure,
    /// `MaskRcnnFileNotFoundError` (also a FileNotFoundError).
    NotFound,
    /// `MaskRcnnValueError` (also a ValueError): a usage error, a bad option value.
    Invalid,
}

/// An engine error as the command line prints it (after `error: `), and its Python class.
struct EngineError {
    kind: ErrorKind,
    message: String,
}

impl EngineError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    fn from_anyhow(e: &anyhow::Error) -> Self {
        let message = format!("{e:#}");
        let not_found = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound))
            || message.contains("no such file");
        Self { kind: if not_found { ErrorKind::NotFound } else { ErrorKind::Failure }, message }
    }

    fn into_py(self, py: Python<'_>) -> PyErr {
        let class = match self.kind {
            ErrorKind::Failure => "MaskRcnnError",
            ErrorKind::NotFound => "MaskRcnnFileNotFoundError",
            ErrorKind::Invalid => "MaskRcnnValueError",
        };
        match py.import("maskrcnn._errors").and_then(|m| m.getattr(class)).and_then(|c| c.call1((self.message,))) {
            Ok(value) => PyErr::from_value(value),
            Err(e) => e,
        }
    }
}

/// A loaded model: `maskrcnn.load(path)`.
#[pyclass(module = "maskrcnn._maskrcnn", name = "Model")]
struct Model {
    /// Held under a lock: a call with its own `max_detections` changes the configuration for the
    /// length of that call.
    inner: Mutex<MaskRcnn>,
    path: PathBuf,
    weights_path: PathBuf,
}

fn lock(model: &Mutex<MaskRcnn>) -> std::sync::MutexGuard<'_, MaskRcnn> {
    // A panic inside a prediction leaves the model as it was: the configuration is restored on
    // every path and nothing else is written.
    model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An image argument: a path, read as the command line reads it, or an array of raw pixels.
enum ImageArg {
    Path(PathBuf),
    Raw(maskrcnn_data::ImageTensor, SampleType),
}

fn raw_from_array<T: numpy::Element + Copy + Into<f32>>(
    array: PyReadonlyArrayDyn<'_, T>,
) -> PyResult<maskrcnn_data::ImageTensor> {
    use numpy::ndarray::{Axis, Ix2, Ix3};
    let view = array.as_array();
    let shape = view.shape().to_vec();
    // Any strides (slices, flips, Fortran order): the pixels are read as they index.
    let view = match shape.len() {
        2 => view.into_dimensionality::<Ix2>().map(|v| v.insert_axis(Axis(2))),
        3 => view.into_dimensionality::<Ix3>(),
        _ => {
            return Err(EngineError::new(
                ErrorKind::Invalid,
                format!("image: an array of shape {shape:?}; pass HxW (one band) or HxWxC"),
            )
            .into_py(array.py()))
        }
    }
    .map_err(|e| PyTypeError::new_err(e.to_string()))?;
    let (height, width, channels) = view.dim();
    let mut data = Vec::with_capacity(height * width * channels);
    for c in 0..channels {
        data.extend(view.index_axis(Axis(2), c).iter().map(|&v| v.into()));
    }
    Ok(maskrcnn_data::ImageTensor { channels, height, width, data })
}

fn image_arg(image: &Bound<'_, PyAny>) -> PyResult<ImageArg> {
    if let Ok(a) = image.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        return Ok(ImageArg::Raw(raw_from_array(a)?, SampleType::U8));
    }
    if let Ok(a) = image.extract::<PyReadonlyArrayDyn<'_, u16>>() {
        return Ok(ImageArg::Raw(raw_from_array(a)?, SampleType::U16));
    }
    if let Ok(a) = image.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        return Ok(ImageArg::Raw(raw_from_array(a)?, SampleType::F32));
    }
    if let Ok(a) = image.cast::<numpy::PyUntypedArray>() {
        return Err(PyTypeError::new_err(format!(
            "image: arrays of dtype {} are not supported; pass uint8, uint16 or float32",
            a.dtype()
        )));
    }
    if let Ok(path) = image.extract::<PathBuf>() {
        return Ok(ImageArg::Path(path));
    }
    Err(PyTypeError::new_err(format!(
        "image: expected a numpy array (HxW or HxWxC) or a path, got {}",
        image.get_type().name()?
    )))
}

/// Detections of one image as the dictionaries `predict` returns.
fn detections_to_py<'py>(
    py: Python<'py>,
    model: &MaskRcnn,
    size: (usize, usize),
    dets: Vec<maskrcnn::Detection>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for d in dets {
        let dict = PyDict::new(py);
        let b = d.bbox;
        dict.set_item("box", [b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64])?;
        dict.set_item("label", model.config.category_id(d.label))?;
        dict.set_item("class_name", model.config.class_name(d.label))?;
        dict.set_item("score", d.score as f64)?;
        let mask: Vec<bool> = d.mask.to_binary_full(size.0, size.1).into_iter().map(|v| v != 0).collect();
        let mask = Array2::from_shape_vec(size, mask).map_err(|e| PyTypeError::new_err(e.to_string()))?;
        dict.set_item("mask", mask.into_pyarray(py))?;
        list.append(dict)?;
    }
    Ok(list)
}

impl Model {
    /// Predicts each image on its own, as the command line does (a batch would pad the images to
    /// one size and change the detections near their edges), checking for Ctrl-C between images.
    fn predict_all<'py>(
        &self,
        py: Python<'py>,
        images: Vec<ImageArg>,
        score_threshold: Option<f32>,
        max_detections: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyList>>> {
        if let Some(t) = score_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(EngineError::new(
                    ErrorKind::Invalid,
                    format!("score_threshold must be within 0..1, got {t}"),
                )
                .into_py(py));
            }
        }
        if max_detections == Some(0) {
            return Err(EngineError::new(ErrorKind::Invalid, "max_detections must be at least 1").into_py(py));
        }
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            let model = &self.inner;
            let result = py.detach(move || -> Result<(ImageChw, Vec<maskrcnn::Detection>), EngineError> {
                let mut m = lock(model);
                let saved = m.config.clone();
                let run = |m: &mut MaskRcnn| -> anyhow::Result<(ImageChw, Vec<maskrcnn::Detection>)> {
                    maskrcnn::cli::apply_max_detections(&mut m.config, max_detections)?;
                    let input = match image {
                        ImageArg::Path(path) => maskrcnn::predict::load_checked_input(&path, &m.config)?,
                        ImageArg::Raw(raw, sample_type) => {
                            maskrcnn::image_io::model_input_from_raw(raw, sample_type, &m.config)
                                .map_err(|e| anyhow::anyhow!("image: {e}"))?
                        }
                    };
                    let mut dets = m.try_predict(std::slice::from_ref(&input))?.pop().unwrap_or_default();
                    if let Some(t) = score_threshold {
                        dets.retain(|d| d.score >= t);
                    }
                    Ok((input, dets))
                };
                let result = run(&mut m);
                m.config = saved;
                result.map_err(|e| EngineError::from_anyhow(&e))
            });
            let (input, dets) = result.map_err(|e| e.into_py(py))?;
            let m = lock(&self.inner);
            out.push(detections_to_py(py, &m, (input.height, input.width), dets)?);
            drop(m);
            py.check_signals()?;
        }
        Ok(out)
    }
}

#[pymethods]
impl Model {
    /// Objects in one image: a list of dicts with "box" ([x1, y1, x2, y2] in pixels), "label"
    /// (the category id), "class_name", "score" and "mask" (an HxW bool array), best first.
    ///
    /// `image` is a numpy array (HxWxC or HxW, uint8, uint16 or float32, raw values: they are
    /// divided by the pixel scale stored with the model, else by the dtype's range, 255 or 65535)
    /// or the path of an image file. Detections scoring below `score_threshold` are dropped; at
    /// most `max_detections` are kept. None, the default for both, keeps the model's own settings
    /// (torchvision's 0.05 and 100 unless the model stored others), as `maskrcnn predict` does.
    #[pyo3(signature = (image, score_threshold=None, max_detections=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
        score_threshold: Option<f32>,
        max_detections: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let image = image_arg(image)?;
        Ok(self.predict_all(py, vec![image], score_threshold, max_detections)?.remove(0))
    }

    /// `predict` over a list of images (arrays or paths): one list of detections per image.
    #[pyo3(signature = (images, score_threshold=None, max_detections=None))]
    fn predict_batch<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Bound<'py, PyAny>>,
        score_threshold: Option<f32>,
        max_detections: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyList>>> {
        let images = images.iter().map(image_arg).collect::<PyResult<Vec<_>>>()?;
        self.predict_all(py, images, score_threshold, max_detections)
    }

    /// The class names, without the background (label 1 first).
    #[getter]
    fn classes(&self) -> Vec<String> {
        let m = lock(&self.inner);
        (1..m.config.num_classes).map(|l| m.config.class_name(l)).collect()
    }

    /// The category id of each class of `classes`, as results and `predict` give them.
    #[getter]
    fn category_ids(&self) -> Vec<u64> {
        let m = lock(&self.inner);
        (1..m.config.num_classes).map(|l| m.config.category_id(l)).collect()
    }

    /// The model's configuration (config.json of a model folder) as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&lock(&self.inner).config).map_err(|e| PyTypeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The path given to `load`.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The weights file read (an .emd names its own; a run folder holds its model/ or best/).
    #[getter]
    fn weights_path(&self) -> PathBuf {
        self.weights_path.clone()
    }

    fn __repr__(&self) -> String {
        let m = lock(&self.inner);
        format!(
            "<maskrcnn.Model {} (ResNet-{}, {} bands, classes {:?})>",
            self.path.display(),
            m.config.backbone.depth,
            m.config.backbone.in_channels,
            (1..m.config.num_classes).map(|l| m.config.class_name(l)).collect::<Vec<_>>()
        )
    }
}

/// Loads a model in any form the command line takes: a .pth/.pt/.safetensors state dict, a model
/// folder, a training run folder, an arcgis.learn .emd or a .dlpk package.
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
    let loaded = py
        .detach(|| {
            let device = maskrcnn::device::cpu();
            maskrcnn::weights::load_model(&path, &device).map_err(|e| EngineError::from_anyhow(&e))
        })
        .map_err(|e| e.into_py(py))?;
    Ok(Model { inner: Mutex::new(loaded.model), path, weights_path: loaded.weights_path })
}

/// Where a command run from Python reports: the `progress` callable, and Ctrl-C.
struct PyHooks {
    callback: Option<Py<PyAny>>,
    /// The first exception raised in Python (the callback's, or KeyboardInterrupt): it stops the
    /// run and is raised in place of the run's own "interrupted" error.
    error: RefCell<Option<PyErr>>,
    total: Cell<u64>,
    message: RefCell<String>,
    last_detect: Cell<Option<(usize, usize, usize)>>,
}

impl PyHooks {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        Self {
            callback,
            error: RefCell::new(None),
            total: Cell::new(0),
            message: RefCell::new(String::new()),
            last_detect: Cell::new(None),
        }
    }

    /// Calls the callback with one event dict, then lets Python handle pending signals.
    fn emit(&self, fill: impl for<'py> FnOnce(&Bound<'py, PyDict>) -> PyResult<()>) {
        if self.error.borrow().is_some() {
            return;
        }
        Python::attach(|py| {
            let result = (|| -> PyResult<()> {
                if let Some(callback) = &self.callback {
                    let event = PyDict::new(py);
                    fill(&event)?;
                    callback.call1(py, (event,))?;
                }
                py.check_signals()
            })();
            if let Err(e) = result {
                *self.error.borrow_mut() = Some(e);
            }
        });
    }

    fn stopped(&self) -> bool {
        if self.error.borrow().is_none() {
            Python::attach(|py| {
                if let Err(e) = py.check_signals() {
                    *self.error.borrow_mut() = Some(e);
                }
            });
        }
        self.error.borrow().is_some()
    }
}

impl CommandHooks for PyHooks {
    fn detect_progress(&self, p: &maskrcnn_geo::Progress) {
        self.last_detect.set(Some((p.tiles_done, p.tiles_total, p.features_emitted)));
        self.emit(|e| {
            e.set_item("kind", "tiles")?;
            e.set_item("done", p.tiles_done)?;
            e.set_item("total", p.tiles_total)?;
            e.set_item("objects", p.features_emitted)
        });
    }

    fn detect_finished(&self, summary: &maskrcnn_geo::DetectSummary) {
        let (done, total, _) = self.last_detect.get().unwrap_or((summary.tiles_processed, summary.tiles_processed, 0));
        self.last_detect.set(Some((done, total, summary.features_emitted)));
    }

    fn train_progress(&self) -> Option<&dyn TrainProgress> {
        Some(self)
    }

    fn stop_requested(&self) -> bool {
        self.stopped()
    }
}

impl TrainProgress for PyHooks {
    fn start(&self, total: u64, position: u64) {
        self.total.set(total);
        self.emit(|e| {
            e.set_item("kind", "start")?;
            e.set_item("step", position)?;
            e.set_item("total", total)
        });
    }

    fn set_position(&self, position: u64) {
        let message = self.message.borrow().clone();
        self.emit(|e| {
            e.set_item("kind", "step")?;
            e.set_item("step", position)?;
            e.set_item("total", self.total.get())?;
            e.set_item("message", message)
        });
    }

    fn set_message(&self, message: String) {
        *self.message.borrow_mut() = message;
    }

    fn println(&self, line: String) {
        self.emit(|e| {
            e.set_item("kind", "line")?;
            e.set_item("line", line)
        });
    }

    fn finish(&self, note: Option<&str>) {
        self.emit(|e| {
            e.set_item("kind", "finish")?;
            e.set_item("note", note)
        });
    }

    fn stop_requested(&self) -> bool {
        self.stopped()
    }
}

/// Runs `maskrcnn ARGS...` in-process (without the program name), the GIL released, reporting to
/// `progress`. Returns the last tile progress of a detect run as (tiles done, tiles total,
/// objects), else None.
#[pyfunction]
#[pyo3(signature = (args, progress=None))]
fn run_command(
    py: Python<'_>,
    args: Vec<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Option<(usize, usize, usize)>> {
    let (result, raised, tiles) = py.detach(move || {
        let hooks = Rc::new(PyHooks::new(progress));
        let argv = std::iter::once("maskrcnn".to_string()).chain(args);
        let result = maskrcnn::hooks::with_hooks(hooks.clone(), || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| maskrcnn::cli::run_from(argv)))
        });
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let mut error = EngineError::from_anyhow(&e);
                // Usage errors (clap's), and option values the command refuses (`--max-detections
                // must be at least 1`), are the caller's: ValueError.
                if e.downcast_ref::<maskrcnn::hooks::UsageError>().is_some() || error.message.starts_with("--") {
                    error.kind = ErrorKind::Invalid;
                }
                Err(error)
            }
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown failure".into());
                Err(EngineError::new(ErrorKind::Failure, format!("internal failure: {text}")))
            }
        };
        let raised = hooks.error.borrow_mut().take();
        let tiles = hooks.last_detect.get();
        (result, raised, tiles)
    });
    if let Some(e) = raised {
        return Err(e);
    }
    result.map(|()| tiles).map_err(|e| e.into_py(py))
}

#[pymodule]
fn _maskrcnn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(run_command, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
