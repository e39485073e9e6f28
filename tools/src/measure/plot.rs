//! Latency-by-percentile plots, as HdrHistogram's plotter draws them: x is the percentile on
//! a log scale of `1/(1-p)` (ticks 0%, 90%, 99%, 99.9%, ...), y the latency in µs, on a
//! linear scale or (`YScale::Log`, for series microseconds and milliseconds apart) a log
//! scale with a tick per decade. Several series (runs) share one plot, each labelled.
//!
//! One scene (lines, paths, text in pixel coordinates) is rendered two ways: SVG, written by
//! hand, and PNG, rasterised here with 2× supersampling for anti-aliasing and the public
//! domain 8×8 bitmap font of the `font8x8` crate, so a PNG needs no system font and looks
//! the same on every machine.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use super::histogram::NS_PER_US;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 600;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 925.0;
const TOP: f64 = 72.0;
const BOTTOM: f64 = 530.0;
/// The x axis always reaches 99.999% (5 decades), and 99.9999% when the data does (beyond,
/// tick labels would collide; rarer points are drawn at the right edge).
const MIN_DECADES: u32 = 5;
const MAX_DECADES: u32 = 6;
const SUPERSAMPLE: u32 = 2;

/// One run: `(percentile as a fraction in [0, 1], latency µs)` points, percentiles rising.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The points HdrHistogram's percentile distribution would list for `histogram` (ns),
/// in µs.
pub fn series_from_histogram(label: &str, histogram: &Histogram<u64>) -> Series {
    let points = if histogram.is_empty() {
        Vec::new()
    } else {
        histogram
            .iter_quantiles(5)
            .map(|step| (step.quantile_iterated_to(), step.value_iterated_to() as f64 / NS_PER_US))
            .collect()
    };
    Series { label: label.to_string(), points }
}

/// The `(percentile, value)` rows of a percentile distribution text (`.hgrm`): lines of three
/// or four numbers (value, percentile, total count, 1/(1-p)); headers, comments and other
/// lines are skipped, so wrk2's `--latency` output parses too.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !(3..=4).contains(&fields.len()) {
                return None;
            }
            let value: f64 = fields[0].parse().ok()?;
            let percentile: f64 = fields[1].parse().ok()?;
            fields[2].parse::<u64>().ok()?;
            ((0.0..=1.0).contains(&percentile) && value.is_finite()).then_some((percentile, value))
        })
        .collect()
}

/// `rush plot`: plots `.hgrm` files into `output` (`.svg` or `.png`).
pub fn plot_files(inputs: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    if inputs.is_empty() {
        bail!("give at least one .hgrm file to plot");
    }
    let mut series = Vec::new();
    for input in inputs {
        let text = fs::read_to_string(input)
            .with_context(|| format!("cannot read {}", input.display()))?;
        let points = parse_hgrm(&text);
        if points.is_empty() {
            bail!("{} has no percentile distribution lines", input.display());
        }
        let label = input.file_name().map_or_else(
            || input.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        series.push(Series { label, points });
    }
    plot_series(&series, output)
}

/// How the latency axis is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    Linear,
    /// A tick per power of ten: series that differ by orders of magnitude stay readable.
    Log,
}

/// Writes `series` as an SVG or PNG file, by the extension of `output`, latency linear.
pub fn plot_series(series: &[Series], output: &Path) -> anyhow::Result<()> {
    plot_series_scaled(series, output, YScale::Linear)
}

/// [`plot_series`] with the latency axis scaled by `scale`.
pub fn plot_series_scaled(series: &[Series], output: &Path, scale: YScale) -> anyhow::Result<()> {
    let scene = scene(series, scale);
    match Format::of(output)? {
        Format::Svg => fs::write(output, to_svg(&scene)),
        Format::Png => fs::write(output, to_png(&scene)?),
    }
    .with_context(|| format!("cannot write {}", output.display()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match extension.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => bail!("{}: the plot file must end in .svg or .png", path.display()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Color(u8, u8, u8);

impl Color {
    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

const WHITE: Color = Color(255, 255, 255);
const BLACK: Color = Color(0, 0, 0);
const GRID: Color = Color(221, 221, 221);
const TEXT: Color = Color(34, 34, 34);
/// Distinct colours for the series (matplotlib's "tab10").
const PALETTE: [Color; 10] = [
    Color(31, 119, 180),
    Color(255, 127, 14),
    Color(44, 160, 44),
    Color(214, 39, 40),
    Color(148, 103, 189),
    Color(140, 86, 75),
    Color(227, 119, 194),
    Color(127, 127, 127),
    Color(188, 189, 34),
    Color(23, 190, 207),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    Start,
    Middle,
    End,
}

#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Rect {
        x: f64,
        y: f64,
        width: f64,
        height: f64,
        fill: Color,
        stroke: Option<Color>,
    },
    Line {
        from: (f64, f64),
        to: (f64, f64),
        color: Color,
        width: f64,
    },
    /// A data series.
    Path {
        points: Vec<(f64, f64)>,
        color: Color,
        width: f64,
        label: String,
    },
    /// `y` is the vertical centre of the text.
    Text {
        x: f64,
        y: f64,
        text: String,
        size: f64,
        anchor: Anchor,
    },
}

#[derive(Clone, Debug)]
struct Scene {
    width: u32,
    height: u32,
    shapes: Vec<Shape>,
}

fn inverse(percentile: f64) -> f64 {
    1.0 / (1.0 - percentile)
}

/// "0%", "90%", "99%", "99.9%", ... for `1 - 10^-decade`.
fn decade_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(decade as usize - 2)).replace("99.%", "99%"),
    }
}

/// A round step giving about five ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|&step| step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn format_tick(value: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{value:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize + 1;
        format!("{value:.decimals$}")
    }
}

/// The points that have a finite x: the 100% row (1/(1-p) infinite) is left out, as
/// HdrHistogram's plotter does; each series' maximum is in its legend entry instead.
fn finite(series: &Series) -> Vec<(f64, f64)> {
    series.points.iter().copied().filter(|&(percentile, _)| percentile < 1.0).collect()
}

/// The latency axis: where a value goes (0 at the bottom, 1 at the top) and its ticks.
struct YAxis {
    scale: YScale,
    low: f64,
    high: f64,
    ticks: Vec<(f64, String)>,
}

impl YAxis {
    fn new(series: &[Series], scale: YScale) -> YAxis {
        let values: Vec<f64> = series.iter().flat_map(finite).map(|(_, value)| value).collect();
        let top_value = values.iter().copied().fold(0.0f64, f64::max);
        match scale {
            YScale::Linear => {
                let step = if top_value > 0.0 { nice_step(top_value * 1.05) } else { 1.0 };
                let high =
                    if top_value > 0.0 { (top_value * 1.05 / step).ceil() * step } else { 5.0 };
                let mut ticks = Vec::new();
                let mut tick = 0.0;
                while tick <= high + step / 1e6 {
                    ticks.push((tick, format_tick(tick, step)));
                    tick += step;
                }
                YAxis { scale, low: 0.0, high, ticks }
            }
            YScale::Log => {
                let bottom_value = values
                    .iter()
                    .copied()
                    .filter(|value| *value > 0.0)
                    .fold(f64::INFINITY, f64::min);
                let (low_decade, high_decade) = if top_value > 0.0 {
                    let low = bottom_value.log10().floor() as i32;
                    let high = (top_value.log10().ceil() as i32).max(low + 1);
                    (low, high)
                } else {
                    (0, 1)
                };
                let ticks = (low_decade..=high_decade)
                    .map(|decade| {
                        let value = 10f64.powi(decade);
                        (value, format_tick(value, value.min(1.0)))
                    })
                    .collect();
                YAxis { scale, low: 10f64.powi(low_decade), high: 10f64.powi(high_decade), ticks }
            }
        }
    }

    /// Where `value` goes, from 0 (bottom) to 1 (top).
    fn position(&self, value: f64) -> f64 {
        let position = match self.scale {
            YScale::Linear => value / self.high,
            YScale::Log => {
                let value = value.max(self.low);
                (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
            }
        };
        position.clamp(0.0, 1.0)
    }
}

fn scene(series: &[Series], scale: YScale) -> Scene {
    let widest = series
        .iter()
        .flat_map(finite)
        .map(|(percentile, _)| inverse(percentile).log10().ceil() as u32)
        .max()
        .unwrap_or(0);
    let decades = widest.clamp(MIN_DECADES, MAX_DECADES);
    let axis = YAxis::new(series, scale);
    let to_x = |percentile: f64| {
        let position = (inverse(percentile).log10() / f64::from(decades)).min(1.0);
        LEFT + position * (RIGHT - LEFT)
    };
    let to_y = |value: f64| BOTTOM - axis.position(value) * (BOTTOM - TOP);

    let mut shapes = vec![Shape::Rect {
        x: 0.0,
        y: 0.0,
        width: f64::from(WIDTH),
        height: f64::from(HEIGHT),
        fill: WHITE,
        stroke: None,
    }];
    let text = |x, y, text: String, size, anchor| Shape::Text { x, y, text, size, anchor };
    for decade in 0..=decades {
        let x = LEFT + f64::from(decade) / f64::from(decades) * (RIGHT - LEFT);
        shapes.push(Shape::Line { from: (x, TOP), to: (x, BOTTOM), color: GRID, width: 1.0 });
        shapes.push(text(x, BOTTOM + 18.0, decade_label(decade), 13.0, Anchor::Middle));
    }
    for (value, label) in &axis.ticks {
        let y = to_y(*value);
        shapes.push(Shape::Line { from: (LEFT, y), to: (RIGHT, y), color: GRID, width: 1.0 });
        shapes.push(text(LEFT - 8.0, y, label.clone(), 13.0, Anchor::End));
    }
    shapes.push(Shape::Line {
        from: (LEFT, BOTTOM),
        to: (RIGHT, BOTTOM),
        color: BLACK,
        width: 1.5,
    });
    shapes.push(Shape::Line { from: (LEFT, TOP), to: (LEFT, BOTTOM), color: BLACK, width: 1.5 });
    shapes.push(text(
        f64::from(WIDTH) / 2.0,
        24.0,
        "Latency by percentile".into(),
        20.0,
        Anchor::Middle,
    ));
    let y_title = match scale {
        YScale::Linear => "Latency (µs)",
        YScale::Log => "Latency (µs, log scale)",
    };
    shapes.push(text(20.0, TOP - 22.0, y_title.into(), 14.0, Anchor::Start));
    shapes.push(text(
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 48.0,
        "Percentile".into(),
        14.0,
        Anchor::Middle,
    ));

    for (index, series) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let points: Vec<(f64, f64)> =
            finite(series).into_iter().map(|(p, value)| (to_x(p), to_y(value))).collect();
        shapes.push(Shape::Path { points, color, width: 2.0, label: series.label.clone() });
    }
    // The legend, top left inside the plot.
    let entries: Vec<String> = series
        .iter()
        .map(|series| {
            let max = series.points.iter().map(|&(_, value)| value).fold(0.0f64, f64::max);
            format!("{}  (max {max:.1} µs)", series.label)
        })
        .collect();
    let longest = entries.iter().map(|entry| entry.chars().count()).max().unwrap_or(0);
    let (box_x, box_y, row) = (LEFT + 14.0, TOP + 12.0, 22.0);
    shapes.push(Shape::Rect {
        x: box_x,
        y: box_y,
        width: 56.0 + longest as f64 * 8.0,
        height: 10.0 + row * entries.len() as f64,
        fill: WHITE,
        stroke: Some(Color(170, 170, 170)),
    });
    for (index, entry) in entries.into_iter().enumerate() {
        let y = box_y + 5.0 + row * (index as f64 + 0.5);
        let color = PALETTE[index % PALETTE.len()];
        shapes.push(Shape::Line {
            from: (box_x + 8.0, y),
            to: (box_x + 38.0, y),
            color,
            width: 2.5,
        });
        shapes.push(text(box_x + 46.0, y, entry, 13.0, Anchor::Start));
    }
    Scene { width: WIDTH, height: HEIGHT, shapes }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn to_svg(scene: &Scene) -> String {
    let mut svg = String::new();
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#,
        w = scene.width,
        h = scene.height
    );
    for shape in &scene.shapes {
        let _ = match shape {
            Shape::Rect { x, y, width, height, fill, stroke } => {
                let stroke = stroke.map_or_else(|| "none".to_string(), Color::hex);
                writeln!(
                    svg,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}" fill="{}" stroke="{stroke}"/>"#,
                    fill.hex()
                )
            }
            Shape::Line { from, to, color, width } => writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="{width}"/>"#,
                from.0,
                from.1,
                to.0,
                to.1,
                color.hex()
            ),
            Shape::Path { points, color, width, label } => {
                let mut data = String::new();
                for (index, (x, y)) in points.iter().enumerate() {
                    let command = if index == 0 { 'M' } else { 'L' };
                    let _ = write!(data, "{command}{x:.2},{y:.2} ");
                }
                writeln!(
                    svg,
                    r#"<path d="{}" fill="none" stroke="{}" stroke-width="{width}" stroke-linejoin="round"><title>{}</title></path>"#,
                    data.trim_end(),
                    color.hex(),
                    escape(label)
                )
            }
            Shape::Text { x, y, text, size, anchor } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                writeln!(
                    svg,
                    r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" dominant-baseline="middle" fill="{}">{}</text>"#,
                    TEXT.hex(),
                    escape(text)
                )
            }
        };
    }
    svg.push_str("</svg>\n");
    svg
}

/// An RGB raster at `SUPERSAMPLE` times the scene's size.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, color: Color) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = [color.0, color.1, color.2];
        }
    }

    /// Fills the rectangle given in scene coordinates.
    fn fill(&mut self, x: f64, y: f64, width: f64, height: f64, color: Color) {
        let s = f64::from(SUPERSAMPLE);
        let (x0, y0) = ((x * s).round() as i64, (y * s).round() as i64);
        let (x1, y1) = (((x + width) * s).round() as i64, ((y + height) * s).round() as i64);
        for py in y0..y1 {
            for px in x0..x1 {
                self.set(px, py, color);
            }
        }
    }

    /// A segment `width` wide with round caps: every pixel whose centre is within
    /// `width / 2` of it (the supersampling smooths the edges).
    fn segment(&mut self, from: (f64, f64), to: (f64, f64), width: f64, color: Color) {
        let s = f64::from(SUPERSAMPLE);
        let (ax, ay, bx, by) = (from.0 * s, from.1 * s, to.0 * s, to.1 * s);
        let radius = (width * s / 2.0).max(0.5);
        let (dx, dy) = (bx - ax, by - ay);
        let length2 = dx * dx + dy * dy;
        let left = (ax.min(bx) - radius).floor() as i64;
        let right = (ax.max(bx) + radius).ceil() as i64;
        let top = (ay.min(by) - radius).floor() as i64;
        let bottom = (ay.max(by) + radius).ceil() as i64;
        for py in top..=bottom {
            for px in left..=right {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                let t = if length2 == 0.0 {
                    0.0
                } else {
                    (((cx - ax) * dx + (cy - ay) * dy) / length2).clamp(0.0, 1.0)
                };
                let (nx, ny) = (ax + t * dx - cx, ay + t * dy - cy);
                if nx * nx + ny * ny <= radius * radius {
                    self.set(px, py, color);
                }
            }
        }
    }

    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: Color) {
        // An integer multiple of the 8×8 cell: 16 px for labels, 24 px for the title.
        let scale = if size >= 18.0 { 3.0 } else { 2.0 };
        let cell = 8.0 * scale;
        let width = text.chars().count() as f64 * cell;
        let left = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - width / 2.0,
            Anchor::End => x - width,
        };
        let top = y - cell / 2.0;
        for (index, character) in text.chars().enumerate() {
            let glyph = glyph(character);
            for (row, bits) in glyph.iter().enumerate() {
                for column in 0..8 {
                    if bits & (1 << column) != 0 {
                        self.fill(
                            left + index as f64 * cell + f64::from(column) * scale,
                            top + row as f64 * scale,
                            scale,
                            scale,
                            color,
                        );
                    }
                }
            }
        }
    }

    /// Averages each `SUPERSAMPLE`² block into one pixel.
    fn downsample(&self) -> Vec<u8> {
        let factor = SUPERSAMPLE as usize;
        let (width, height) = (self.width / factor, self.height / factor);
        let mut out = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let mut sum = [0u32; 3];
                for dy in 0..factor {
                    for dx in 0..factor {
                        let pixel = self.pixels[(y * factor + dy) * self.width + x * factor + dx];
                        for channel in 0..3 {
                            sum[channel] += u32::from(pixel[channel]);
                        }
                    }
                }
                let count = (factor * factor) as u32;
                out.extend(sum.iter().map(|&total| ((total + count / 2) / count) as u8));
            }
        }
        out
    }
}

/// The 8×8 glyph of `character` (bit 0 is the leftmost pixel); `?` when the font lacks it.
fn glyph(character: char) -> [u8; 8] {
    use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};
    let code = character as usize;
    match code {
        0x20..=0x7E => BASIC_LEGACY[code],
        0xA0..=0xFF => LATIN_LEGACY[code - 0xA0],
        _ => BASIC_LEGACY[usize::from(b'?')],
    }
}

fn to_png(scene: &Scene) -> anyhow::Result<Vec<u8>> {
    let mut canvas = Canvas {
        width: (scene.width * SUPERSAMPLE) as usize,
        height: (scene.height * SUPERSAMPLE) as usize,
        pixels: vec![
            [255, 255, 255];
            (scene.width * scene.height * SUPERSAMPLE * SUPERSAMPLE) as usize
        ],
    };
    for shape in &scene.shapes {
        match shape {
            Shape::Rect { x, y, width, height, fill, stroke } => {
                canvas.fill(*x, *y, *width, *height, *fill);
                if let Some(stroke) = stroke {
                    let corners =
                        [(*x, *y), (x + width, *y), (x + width, y + height), (*x, y + height)];
                    for index in 0..4 {
                        canvas.segment(corners[index], corners[(index + 1) % 4], 1.0, *stroke);
                    }
                }
            }
            Shape::Line { from, to, color, width } => canvas.segment(*from, *to, *width, *color),
            Shape::Path { points, color, width, .. } => {
                for pair in points.windows(2) {
                    canvas.segment(pair[0], pair[1], *width, *color);
                }
                if let [only] = points.as_slice() {
                    canvas.segment(*only, *only, width * 2.0, *color);
                }
            }
            Shape::Text { x, y, text, size, anchor } => {
                canvas.text(*x, *y, text, *size, *anchor, TEXT)
            }
        }
    }
    let rgb = canvas.downsample();
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, scene.width, scene.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("PNG header")?;
        writer.write_image_data(&rgb).context("PNG data")?;
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(label: &str, scale: f64) -> Series {
        let points =
            [(0.0, 10.0), (0.5, 20.0), (0.9, 40.0), (0.99, 90.0), (0.999, 300.0), (1.0, 800.0)];
        Series {
            label: label.into(),
            points: points.iter().map(|&(p, v)| (p, v * scale)).collect(),
        }
    }

    #[test]
    fn svg_has_one_path_per_series_and_is_well_formed() {
        let series = [sample("a.hgrm", 1.0), sample("b&<c>.hgrm", 2.0)];
        let svg = to_svg(&scene(&series, YScale::Linear));
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<path ").count(), 2);
        assert_eq!(svg.matches("<svg ").count(), 1);
        assert_eq!(svg.matches("<text ").count(), svg.matches("</text>").count());
        assert!(svg.contains("b&amp;&lt;c&gt;.hgrm"));
        // Every '&' starts an entity; no stray '<' inside text.
        for (index, _) in svg.match_indices('&') {
            let rest = &svg[index..];
            assert!(["&amp;", "&lt;", "&gt;", "&quot;"].iter().any(|e| rest.starts_with(e)));
        }
        for tick in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}");
        }
        // Each element line is closed.
        for line in svg.lines().filter(|line| {
            line.starts_with('<')
                && !line.starts_with("<?")
                && !line.starts_with("<svg")
                && !line.starts_with("</svg")
        }) {
            assert!(
                line.ends_with("/>") || line.ends_with("</text>") || line.ends_with("</path>"),
                "{line}"
            );
        }
    }

    #[test]
    fn a_log_latency_axis_has_a_tick_per_decade_and_spaces_decades_evenly() {
        // 10 µs to 300 µs (the 100% row is left out): decades 10, 100, 1000.
        let scene = scene(&[sample("a", 1.0)], YScale::Log);
        let ticks: Vec<&str> = scene
            .shapes
            .iter()
            .filter_map(|shape| match shape {
                Shape::Text { text, anchor: Anchor::End, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ticks, ["10", "100", "1000"]);
        let Some(Shape::Path { points, .. }) =
            scene.shapes.iter().find(|shape| matches!(shape, Shape::Path { .. }))
        else {
            panic!("no path")
        };
        // 10 µs on the bottom line, 100 µs half way up (one decade of two).
        assert!((points[0].1 - BOTTOM).abs() < 1e-9);
        let half = (BOTTOM + TOP) / 2.0;
        let y_of_100 = BOTTOM - (100_f64.log10() - 1.0) / 2.0 * (BOTTOM - TOP);
        assert!((y_of_100 - half).abs() < 1e-9);
        assert!(points.windows(2).all(|pair| pair[0].1 >= pair[1].1), "higher is further up");
    }

    #[test]
    fn x_axis_is_log_of_inverse_percentile() {
        let scene = scene(&[sample("a", 1.0)], YScale::Linear);
        let Some(Shape::Path { points, .. }) =
            scene.shapes.iter().find(|shape| matches!(shape, Shape::Path { .. }))
        else {
            panic!("no path")
        };
        // 0% at the left edge, 90% one decade in (of five), 99.9% three decades in; 100% left out.
        assert_eq!(points.len(), 5);
        let span = RIGHT - LEFT;
        assert!((points[0].0 - LEFT).abs() < 1e-9);
        assert!((points[2].0 - (LEFT + span / 5.0)).abs() < 1e-6);
        assert!((points[4].0 - (LEFT + span * 3.0 / 5.0)).abs() < 1e-6);
        assert!(points.windows(2).all(|pair| pair[0].1 >= pair[1].1), "higher is further up");
        assert_eq!(decade_label(0), "0%");
        assert_eq!(decade_label(2), "99%");
        assert_eq!(decade_label(5), "99.999%");
    }

    #[test]
    fn parses_hgrm_text_and_renders_png() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    \x20     10.000 0.000000000000          1           1.00\n\
                    \x20     20.000 0.500000000000          5           2.00\n\
                    \x20     30.000 1.000000000000         10\n\
                    #[Mean    =       20.000, StdDeviation   =        5.000]\n";
        assert_eq!(parse_hgrm(text), vec![(0.0, 10.0), (0.5, 20.0), (1.0, 30.0)]);
        let png = to_png(&scene(
            &[Series { label: "x.hgrm".into(), points: parse_hgrm(text) }],
            YScale::Linear,
        ))
        .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(Format::of(Path::new("a.jpg")).is_err());
        assert_eq!(Format::of(Path::new("a.PNG")).unwrap(), Format::Png);
    }
}
