// msf_runtime.hpp: header-only C++ RAII wrapper over the msf-runtime C API (msf_runtime.h).
//
//   msf::Decomposer dec("slate.onnx");                  // load once, share between threads
//   msf::Result r = dec.decompose(img.data, img.cols, img.rows, img.step, msf::PixelFormat::Bgr8);
//   msf::MaskView m = r.mask_in_frame();                // slot index per frame pixel
//   for (uint32_t k = 0; k < r.num_slots(); ++k) { MsfBBox b = r.bbox_in_frame(k); ... }
//   MsfView v = r.view();                               // where the model's mask lies in the frame
//
//   msf::Decomposer crop("slate.onnx", msf::Options().fit(msf::Fit::Crop));  // upstream's centre crop
//
//   msf::Tracker tracker(dec);                          // one per stream: stable slot ids over time
//   msf::Result r2 = tracker.step(...);
//
// Handles are move-only and freed by their destructors. Failures throw msf::Error, which carries
// the MsfStatus and the library's message. Requires C++11.
#ifndef MSF_RUNTIME_HPP
#define MSF_RUNTIME_HPP

#include "msf_runtime.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace msf {

/// A failed call: `status()` says what kind of failure, `what()` the library's message.
class Error : public std::runtime_error {
public:
    Error(MsfStatus status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    MsfStatus status() const noexcept { return status_; }

private:
    MsfStatus status_;
};

namespace detail {
inline void check(MsfStatus status) {
    if (status != MSF_STATUS_OK) {
        const char* msg = msf_last_error();
        throw Error(status, std::string(msf_status_string(static_cast<int>(status))) + ": " +
                                (msg != nullptr ? msg : ""));
    }
}
}  // namespace detail

/// The library version string, e.g. "0.1.0".
inline std::string version() { return msf_version(); }

/// How a frame that is not square is put into the model's square input (MsfOptions.fit).
enum class Fit : MsfFit {
    Crop = MSF_FIT_CROP,        ///< centre crop, as upstream evaluates (the sides get MSF_MASK_VOID)
    Stretch = MSF_FIT_STRETCH,  ///< the whole frame resized to the square (the default)
    Pad = MSF_FIT_PAD,          ///< aspect kept, padded with the mean colour
    Tiles = MSF_FIT_TILES,      ///< overlapping squares merged: objects per frame vary, may exceed K
};

enum class PixelFormat : MsfPixelFormat {
    Rgb8 = MSF_PIXEL_FORMAT_RGB8,
    Bgr8 = MSF_PIXEL_FORMAT_BGR8,
    Rgba8 = MSF_PIXEL_FORMAT_RGBA8,
    Bgra8 = MSF_PIXEL_FORMAT_BGRA8,
    Gray8 = MSF_PIXEL_FORMAT_GRAY8,
};

/// Bytes a frame buffer must hold (stride 0 = packed rows).
inline std::size_t required_size(uint32_t width, uint32_t height, std::size_t stride, PixelFormat format) {
    std::size_t n = 0;
    detail::check(msf_image_required_size(width, height, stride, static_cast<MsfPixelFormat>(format), &n));
    return n;
}

/// A row-major 8-bit mask owned by a Result: `width * height` slot indices.
struct MaskView {
    const uint8_t* data;
    uint32_t width;
    uint32_t height;
    uint8_t at(uint32_t x, uint32_t y) const { return data[static_cast<std::size_t>(y) * width + x]; }
    std::size_t size() const { return static_cast<std::size_t>(width) * height; }
};

/// One frame's decomposition. Move-only; the buffers it returns live as long as it does.
class Result {
public:
    Result() noexcept : r_(nullptr) {}
    explicit Result(MsfResult* r) noexcept : r_(r) {}
    ~Result() { reset(); }
    Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    Result& operator=(Result&& o) noexcept {
        if (this != &o) {
            reset();
            r_ = o.r_;
            o.r_ = nullptr;
        }
        return *this;
    }
    Result(const Result&) = delete;
    Result& operator=(const Result&) = delete;

    explicit operator bool() const noexcept { return r_ != nullptr; }
    const MsfResult* get() const noexcept { return r_; }
    /// Give up ownership (the caller must msf_result_destroy it).
    MsfResult* release() noexcept {
        MsfResult* r = r_;
        r_ = nullptr;
        return r;
    }
    void reset() noexcept {
        if (r_ != nullptr) {
            msf_result_destroy(r_);
            r_ = nullptr;
        }
    }

    /// The number of objects of this result (valid slot indices 0..num_slots()-1). Take it from each
    /// result: with Fit::Tiles it varies per frame and may exceed the model's K.
    uint32_t num_slots() const {
        std::size_t n = 0;
        detail::check(msf_result_num_slots(r_, &n));
        return static_cast<uint32_t>(n);
    }
    std::size_t slot_dim() const {
        std::size_t n = 0;
        detail::check(msf_result_slot_dim(r_, &n));
        return n;
    }
    /// num_slots() x slot_dim() floats, row-major.
    const float* slots() const {
        const float* p = nullptr;
        std::size_t n = 0;
        detail::check(msf_result_slots(r_, &p, &n));
        return p;
    }
    /// The slot vector of slot `k` (slot_dim() floats).
    const float* slot(uint32_t k) const {
        if (k >= num_slots()) throw Error(MSF_STATUS_INVALID_ARGUMENT, "slot index out of range");
        return slots() + static_cast<std::size_t>(k) * slot_dim();
    }
    /// mask_size x mask_size over the model's input; view() says where it lies in the frame.
    MaskView mask() const {
        MaskView m{nullptr, 0, 0};
        detail::check(msf_result_mask(r_, &m.data, &m.width, &m.height));
        return m;
    }
    /// Frame resolution; MSF_MASK_VOID only outside the centre crop of Fit::Crop.
    MaskView mask_in_frame() const {
        MaskView m{nullptr, 0, 0};
        detail::check(msf_result_mask_frame(r_, &m.data, &m.width, &m.height));
        return m;
    }
    uint64_t area(uint32_t slot) const {
        uint64_t a = 0;
        detail::check(msf_result_area(r_, slot, &a));
        return a;
    }
    uint64_t area_in_frame(uint32_t slot) const {
        uint64_t a = 0;
        detail::check(msf_result_area_frame(r_, slot, &a));
        return a;
    }
    MsfBBox bbox(uint32_t slot) const {
        MsfBBox b{0, 0, 0, 0};
        detail::check(msf_result_bbox(r_, slot, &b));
        return b;
    }
    MsfBBox bbox_in_frame(uint32_t slot) const {
        MsfBBox b{0, 0, 0, 0};
        detail::check(msf_result_bbox_frame(r_, slot, &b));
        return b;
    }
    /// The centre crop of a Fit::Crop result; throws (MSF_STATUS_INVALID_ARGUMENT) for the other
    /// fits, which view() describes.
    MsfCrop crop() const {
        MsfCrop c{0, 0, 0, 0, 0, 0};
        detail::check(msf_result_crop(r_, &c));
        return c;
    }
    /// How the frame was put into the model's input and where the model-resolution mask lies in it
    /// (every fit).
    MsfView view() const {
        MsfView v = MsfView();
        v.struct_size = static_cast<uint32_t>(sizeof v);
        detail::check(msf_result_view(r_, &v));
        return v;
    }
    /// The fit this result was made with.
    Fit fit() const { return static_cast<Fit>(view().fit); }

private:
    MsfResult* r_;
};

/// Loading options; `Options()` are the library defaults.
struct Options {
    MsfOptions raw;
    Options() : raw(msf_options_default()) {}
    Options& threads(uint32_t n) { raw.threads = n; return *this; }
    Options& backend(MsfBackend b) { raw.backend = b; return *this; }
    Options& provider(MsfProvider p) { raw.provider = p; return *this; }
    Options& allow_fallback(bool yes) { raw.allow_fallback = yes ? 1u : 0u; return *this; }
    /// Threads that will call decompose/step at once (onnxruntime keeps one session each).
    Options& concurrency(uint32_t n) { raw.concurrency = n; return *this; }
    /// How non-square frames are fitted into the model's input (default Fit::Stretch).
    Options& fit(Fit f) { raw.fit = static_cast<MsfFit>(f); return *this; }
};

/// A loaded model. Thread-safe: share one between threads (by reference or pointer). Move-only.
class Decomposer {
public:
    explicit Decomposer(const std::string& onnx_path, const Options& options = Options()) : d_(nullptr) {
        detail::check(msf_decomposer_create(onnx_path.c_str(), &options.raw, &d_));
    }
    ~Decomposer() {
        if (d_ != nullptr) msf_decomposer_destroy(d_);
    }
    Decomposer(Decomposer&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
    Decomposer& operator=(Decomposer&& o) noexcept {
        if (this != &o) {
            if (d_ != nullptr) msf_decomposer_destroy(d_);
            d_ = o.d_;
            o.d_ = nullptr;
        }
        return *this;
    }
    Decomposer(const Decomposer&) = delete;
    Decomposer& operator=(const Decomposer&) = delete;

    const MsfDecomposer* get() const noexcept { return d_; }

    MsfModelInfo info() const {
        MsfModelInfo i{0, 0, 0, 0, 0};
        detail::check(msf_decomposer_info(d_, &i));
        return i;
    }

    /// Decompose one frame: `height` rows of `stride` bytes (0 = packed), read in place.
    Result decompose(const uint8_t* data, uint32_t width, uint32_t height, std::size_t stride,
                     PixelFormat format) const {
        MsfResult* r = nullptr;
        detail::check(msf_decompose(d_, data, width, height, stride, static_cast<MsfPixelFormat>(format), &r));
        return Result(r);
    }

private:
    MsfDecomposer* d_;
};

/// Tracker options; `TrackerOptions()` are the library defaults.
struct TrackerOptions {
    MsfTrackerOptions raw;
    TrackerOptions() : raw(msf_tracker_options_default()) {}
    TrackerOptions& temporal(MsfTemporal t) { raw.temporal = t; return *this; }
    TrackerOptions& matching(bool yes) { raw.matching = yes ? 1u : 0u; return *this; }
    TrackerOptions& iou_weight(float w) { raw.iou_weight = w; return *this; }
};

/// One stream's temporal state: slot k keeps meaning the same object from frame to frame. Keeps
/// the model loaded (the Decomposer may go first). Use one per stream. Move-only. The Decomposer's
/// fit must give one model view per frame (not Fit::Tiles: the constructor throws).
class Tracker {
public:
    explicit Tracker(const Decomposer& dec, const TrackerOptions& options = TrackerOptions()) : t_(nullptr) {
        detail::check(msf_tracker_create(dec.get(), &options.raw, &t_));
    }
    ~Tracker() {
        if (t_ != nullptr) msf_tracker_destroy(t_);
    }
    Tracker(Tracker&& o) noexcept : t_(o.t_) { o.t_ = nullptr; }
    Tracker& operator=(Tracker&& o) noexcept {
        if (this != &o) {
            if (t_ != nullptr) msf_tracker_destroy(t_);
            t_ = o.t_;
            o.t_ = nullptr;
        }
        return *this;
    }
    Tracker(const Tracker&) = delete;
    Tracker& operator=(const Tracker&) = delete;

    Result step(const uint8_t* data, uint32_t width, uint32_t height, std::size_t stride, PixelFormat format) {
        MsfResult* r = nullptr;
        detail::check(msf_tracker_step(t_, data, width, height, stride, static_cast<MsfPixelFormat>(format), &r));
        return Result(r);
    }
    void reset() { detail::check(msf_tracker_reset(t_)); }
    uint64_t frames() const {
        uint64_t n = 0;
        detail::check(msf_tracker_frames(t_, &n));
        return n;
    }

private:
    MsfTracker* t_;
};

}  // namespace msf

#endif  // MSF_RUNTIME_HPP
