// Decompose one image with msf-runtime from C++ and write its object mask.
//
//   msf_example [--fit crop|stretch|pad|tiles] MODEL.onnx IMAGE.ppm MASK.pgm [MODEL_MASK.pgm]
//
// IMAGE is a binary PPM (P6, 8 bits). --fit says how a non-square image is put into the model's square
// input (default: the library's, stretch). MASK gets the frame-resolution mask as a binary PGM (P5):
// the slot index of each pixel, 255 (MSF_MASK_VOID) where the model saw nothing (outside the centre
// crop of --fit crop). The optional MODEL_MASK gets the model-resolution mask (256 x 256). A summary
// goes to stdout.
#include <msf_runtime.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Image {
    uint32_t width = 0;
    uint32_t height = 0;
    std::vector<uint8_t> rgb;  // packed R G B rows
};

// Next header token of a PNM file, skipping whitespace and # comments.
std::string pnm_token(std::istream& in) {
    std::string tok;
    int c;
    while ((c = in.get()) != EOF) {
        if (c == '#') {
            while ((c = in.get()) != EOF && c != '\n') {
            }
        } else if (std::isspace(c)) {
            if (!tok.empty()) break;
        } else {
            tok.push_back(static_cast<char>(c));
        }
    }
    return tok;
}

Image read_ppm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    if (pnm_token(in) != "P6") throw std::runtime_error(path + ": not a binary PPM (P6)");
    Image img;
    unsigned long w = std::stoul(pnm_token(in)), h = std::stoul(pnm_token(in)), maxval = std::stoul(pnm_token(in));
    if (w == 0 || h == 0 || w > 65535 || h > 65535) throw std::runtime_error(path + ": bad size");
    if (maxval != 255) throw std::runtime_error(path + ": only 8-bit PPM (maxval 255) is supported");
    img.width = static_cast<uint32_t>(w);
    img.height = static_cast<uint32_t>(h);
    img.rgb.resize(static_cast<size_t>(w) * h * 3);
    // pnm_token consumed the single whitespace byte after maxval.
    in.read(reinterpret_cast<char*>(img.rgb.data()), static_cast<std::streamsize>(img.rgb.size()));
    if (in.gcount() != static_cast<std::streamsize>(img.rgb.size())) throw std::runtime_error(path + ": truncated");
    return img;
}

void write_pgm(const std::string& path, const msf::MaskView& m) {
    std::ofstream out(path, std::ios::binary);
    out << "P5\n" << m.width << " " << m.height << "\n255\n";
    out.write(reinterpret_cast<const char*>(m.data), static_cast<std::streamsize>(m.size()));
    if (!out) throw std::runtime_error(path + ": cannot write");
}

const char* fit_name(msf::Fit f) {
    switch (f) {
        case msf::Fit::Crop: return "crop";
        case msf::Fit::Stretch: return "stretch";
        case msf::Fit::Pad: return "pad";
        case msf::Fit::Tiles: return "tiles";
    }
    return "?";
}

msf::Fit parse_fit(const std::string& s) {
    for (msf::Fit f : {msf::Fit::Crop, msf::Fit::Stretch, msf::Fit::Pad, msf::Fit::Tiles})
        if (s == fit_name(f)) return f;
    throw std::runtime_error("unknown fit `" + s + "` (use crop, stretch, pad or tiles)");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    std::string fit;
    if (args.size() >= 2 && args[0] == "--fit") {
        fit = args[1];
        args.erase(args.begin(), args.begin() + 2);
    }
    if (args.size() < 3 || args.size() > 4) {
        std::cerr << "usage: " << argv[0] << " [--fit crop|stretch|pad|tiles] MODEL.onnx IMAGE.ppm MASK.pgm [MODEL_MASK.pgm]\n";
        return 2;
    }
    try {
        std::cout << "msf_runtime " << msf::version() << "\n";
        msf::Options options = msf::Options().threads(1);
        if (!fit.empty()) options.fit(parse_fit(fit));
        msf::Decomposer dec(args[0], options);
        MsfModelInfo info = dec.info();
        Image img = read_ppm(args[1]);

        // Any stride works; packed rows here (stride 0 would mean the same).
        msf::Result r = dec.decompose(img.rgb.data(), img.width, img.height, size_t(img.width) * 3,
                                      msf::PixelFormat::Rgb8);

        // Where the model's square input came from: every fit has a view; only crop has an MsfCrop.
        MsfView v = r.view();
        std::cout << "image " << img.width << "x" << img.height << ", fit " << fit_name(static_cast<msf::Fit>(v.fit))
                  << ": frame [" << v.frame.x << "," << v.frame.y << " " << v.frame.width << "x" << v.frame.height
                  << "] -> input [" << v.input.x << "," << v.input.y << " " << v.input.width << "x" << v.input.height
                  << "] of " << v.input_size << ", " << v.tiles << " tile(s), "
                  << (v.covers_frame ? "covers the frame" : "part of the frame") << "\n";
        if (v.fit == MSF_FIT_CROP) {
            MsfCrop crop = r.crop();
            std::cout << "crop " << crop.size << " at (" << crop.left << "," << crop.top << ")\n";
        }
        // The number of objects comes from the result (tiles may give more than the model's K).
        std::cout << r.num_slots() << " slots of " << r.slot_dim() << " (model: " << info.num_slots
                  << " slots, mask " << info.mask_size << ")\n";
        for (uint32_t k = 0; k < r.num_slots(); ++k) {
            MsfBBox b = r.bbox_in_frame(k);
            std::cout << "slot " << k << ": area " << r.area_in_frame(k) << " px, bbox [" << b.x0 << "," << b.y0
                      << ")-[" << b.x1 << "," << b.y1 << ")\n";
        }
        write_pgm(args[2], r.mask_in_frame());
        if (args.size() == 4) write_pgm(args[3], r.mask());
        return 0;
    } catch (const msf::Error& e) {
        std::cerr << "msf error (status " << static_cast<int>(e.status()) << "): " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
