//! Reading and writing the files the subcommands share, with errors that name the file
//! and the fix. Every reader runs before anything is written, so bad input leaves no trace.

use std::fs;
use std::path::Path;

use serde::Serialize;
use smp_core::image::RgbImage;
use smp_core::map::ScalpMap;
use smp_core::plan::PlanFile;
use smp_core::rig::{Rig, DEFAULT_RIG_TOML};

use crate::error::CliError;

/// Reads a text file; `what` names it in the message ("map", "plan", ...), `flag` the option.
pub fn read_text(path: &Path, what: &str, flag: &str) -> Result<String, CliError> {
    fs::read_to_string(path).map_err(|e| {
        CliError::input(
            format!("cannot read {what} file {}: {e}", path.display()),
            format!("check the path given to --{flag}"),
        )
    })
}

pub fn read_map(path: &Path) -> Result<ScalpMap, CliError> {
    let text = read_text(path, "map", "map")?;
    ScalpMap::from_json_str(&text).map_err(|e| {
        CliError::input(format!("{}: {e}", path.display()), "give a map.json written by `smp demo` or `smp scan`")
    })
}

pub fn read_plan(path: &Path) -> Result<PlanFile, CliError> {
    let text = read_text(path, "plan", "plan")?;
    PlanFile::from_json_str(&text)
        .map_err(|e| CliError::input(format!("{}: {e}", path.display()), "give a plan.json written by `smp plan`"))
}

/// Checks a `--time-scale` (simulated seconds per wall second).
pub fn check_time_scale(time_scale: f64) -> Result<(), CliError> {
    if time_scale.is_finite() && time_scale > 0.0 && time_scale <= 10_000.0 {
        return Ok(());
    }
    Err(CliError::input(
        format!("--time-scale {time_scale} is not usable"),
        "give a simulated-seconds-per-wall-second factor in (0, 10000]",
    ))
}

/// The rig file, or the embedded `calibration/rig.toml` when none is given.
pub fn read_rig(path: Option<&Path>) -> Result<Rig, CliError> {
    let (text, name) = match path {
        Some(p) => (read_text(p, "rig", "rig")?, p.display().to_string()),
        None => (DEFAULT_RIG_TOML.to_string(), "calibration/rig.toml (embedded)".to_string()),
    };
    Rig::from_toml_str(&text)
        .map_err(|e| CliError::input(format!("{name}: {e}"), "fix the rig file (see calibration/rig.toml)"))
}

/// Decodes a PNG photo (8-bit grey, grey+alpha, RGB or RGBA) into RGB.
pub fn read_png(path: &Path) -> Result<RgbImage, CliError> {
    let bad = |why: String| {
        CliError::input(format!("photo {}: {why}", path.display()), "give an 8-bit PNG photo (e.g. overview.png)")
    };
    let file = fs::File::open(path).map_err(|e| {
        CliError::input(format!("cannot read photo {}: {e}", path.display()), "check the path given to --photo")
    })?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(format!("not a readable PNG ({e})")))?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(format!("corrupt PNG data ({e})")))?;
    let px = info.width as usize * info.height as usize;
    let data: Vec<u8> = match info.color_type {
        png::ColorType::Rgb => buf[..px * 3].to_vec(),
        png::ColorType::Rgba => buf[..px * 4].chunks_exact(4).flat_map(|c| [c[0], c[1], c[2]]).collect(),
        png::ColorType::Grayscale => buf[..px].iter().flat_map(|g| [*g, *g, *g]).collect(),
        png::ColorType::GrayscaleAlpha => buf[..px * 2].chunks_exact(2).flat_map(|c| [c[0], c[0], c[0]]).collect(),
        png::ColorType::Indexed => return Err(bad("an indexed PNG was not expanded".into())),
    };
    Ok(RgbImage { width: info.width, height: info.height, data })
}

/// Encodes an RGB image as PNG.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, CliError> {
    let fail = |e: &dyn std::fmt::Display| CliError::failure(format!("cannot encode a PNG: {e}"));
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, img.width, img.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| fail(&e))?;
        w.write_image_data(&img.data).map_err(|e| fail(&e))?;
        w.finish().map_err(|e| fail(&e))?;
    }
    Ok(bytes)
}

pub fn write_png(path: &Path, img: &RgbImage) -> Result<(), CliError> {
    let bytes = encode_png(img)?;
    fs::write(path, bytes).map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))
}

pub fn write_text(path: &Path, text: &str) -> Result<(), CliError> {
    fs::write(path, text).map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))
}

/// Writes through a temporary file in the same directory and renames it into place, so a
/// crash never leaves a half-written plan or image behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let fail = |e: &dyn std::fmt::Display| {
        CliError::input(format!("cannot write {}: {e}", path.display()), "choose a writable --out path")
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| fail(&e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| fail(&e))?;
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}

pub fn to_json<T: Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::failure(format!("cannot serialise: {e}")))
}
