// CPython bindings of the native kernels: module irregconv.engine.backends.native._gather_gemm_scatter, one
// function per kernel of kernels.h, taking addresses (int, or None for an optional buffer) and int64 sizes in the
// kernel's argument order, returning its status (or None). They release the GIL while the kernel runs.
//
// Why not ctypes: converting a call's arguments through ctypes costs 1.6 us (19 arguments of irc_csr_rows_add),
// the time of a 13k-entry row kernel's smallest share; a Cora GCN training step makes 13 such calls. Parsing
// them here with the vectorcall protocol costs about a tenth of that. The kernels themselves include no Python
// header.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <type_traits>

#include "kernels.h"

namespace {

// values[i] = args[i] as int64, for the kinds "p" (an address: int, or None for null) and "i" (an int).
bool parse(const char* name, PyObject* const* args, Py_ssize_t nargs, const char* kinds, int64_t* values) {
    const Py_ssize_t expected = static_cast<Py_ssize_t>(std::strlen(kinds));
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments (%zd given)", name, expected, nargs);
        return false;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i) {
        if (kinds[i] == 'p' && args[i] == Py_None) {
            values[i] = 0;
            continue;
        }
        values[i] = PyLong_AsLongLong(args[i]);
        if (values[i] == -1 && PyErr_Occurred()) return false;
    }
    return true;
}

template <typename T>
T* at(int64_t address) {
    return reinterpret_cast<T*>(static_cast<intptr_t>(address));
}

// Runs kernel() without the GIL; its int64 status as a Python int (void kernels: None). A C++ exception (the
// kernels' scratch allocations: std::bad_alloc) becomes a Python MemoryError / RuntimeError instead of ending the
// process.
template <typename Kernel>
PyObject* released(Kernel kernel) {
    int64_t status = 0;
    std::string failure;  // a copy: what() dies with the exception
    bool out_of_memory = false;
    Py_BEGIN_ALLOW_THREADS
    try {
        if constexpr (std::is_void_v<decltype(kernel())>) kernel();
        else status = kernel();
    } catch (const std::bad_alloc&) {
        out_of_memory = true;
    } catch (const std::exception& error) {
        failure = error.what();
    } catch (...) {
        failure = "unknown C++ exception";
    }
    Py_END_ALLOW_THREADS
    if (out_of_memory) return PyErr_NoMemory();
    if (!failure.empty()) {
        PyErr_Format(PyExc_RuntimeError, "native kernel failed: %s", failure.c_str());
        return nullptr;
    }
    if constexpr (std::is_void_v<decltype(kernel())>) Py_RETURN_NONE;
    else return PyLong_FromLongLong(status);
}

PyObject* version(PyObject*, PyObject* const*, Py_ssize_t) { return PyLong_FromLongLong(irc_native_version()); }

PyObject* use_openmp(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[3];
    if (!parse("use_openmp", args, nargs, "ppp", v)) return nullptr;
    irc_use_openmp(at<void>(v[0]), at<void>(v[1]), at<void>(v[2]));
    Py_RETURN_NONE;
}

PyObject* conv_accumulate(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[13];
    if (!parse("conv_accumulate", args, nargs, "piipipppiipii", v)) return nullptr;
    return released([&] {
        return irc_conv_accumulate(at<const float>(v[0]), v[1], v[2], at<const float>(v[3]), v[4],
            at<const int64_t>(v[5]), at<const int64_t>(v[6]), at<const int64_t>(v[7]), v[8], v[9], at<float>(v[10]),
            v[11], v[12]);
    });
}

PyObject* conv_weight_grad(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[13];
    if (!parse("conv_weight_grad", args, nargs, "piipiipppiipi", v)) return nullptr;
    return released([&] {
        return irc_conv_weight_grad(at<const float>(v[0]), v[1], v[2], at<const float>(v[3]), v[4], v[5],
            at<const int64_t>(v[6]), at<const int64_t>(v[7]), at<const int64_t>(v[8]), v[9], v[10],
            at<float>(v[11]), v[12]);
    });
}

PyObject* nonzero_rows_matmul(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[10];
    if (!parse("nonzero_rows_matmul", args, nargs, "piipippppi", v)) return nullptr;
    return released([&] {
        return irc_nonzero_rows_matmul(at<const float>(v[0]), v[1], v[2], at<const float>(v[3]), v[4],
            at<float>(v[5]), at<int32_t>(v[6]), at<float>(v[7]), at<int64_t>(v[8]), v[9]);
    });
}

PyObject* csr_weight_grad(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[10];
    if (!parse("csr_weight_grad", args, nargs, "pppiiipipi", v)) return nullptr;
    return released([&] {
        return irc_csr_weight_grad(at<const int64_t>(v[0]), at<const int32_t>(v[1]), at<const float>(v[2]), v[3],
            v[4], v[5], at<const float>(v[6]), v[7], at<float>(v[8]), v[9]);
    });
}

PyObject* rows_outer(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[8];
    if (!parse("rows_outer", args, nargs, "pipiippi", v)) return nullptr;
    return released([&] {
        irc_rows_outer(at<const float>(v[0]), v[1], at<const float>(v[2]), v[3], v[4], at<float>(v[5]),
            at<float>(v[6]), v[7]);
    });
}

PyObject* column_moments(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[7];
    if (!parse("column_moments", args, nargs, "piipppi", v)) return nullptr;
    return released([&] {
        irc_column_moments(at<const float>(v[0]), v[1], v[2], at<double>(v[3]), at<double>(v[4]), at<double>(v[5]),
            v[6]);
    });
}

PyObject* column_grad_sums(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[9];
    if (!parse("column_grad_sums", args, nargs, "ppiippppi", v)) return nullptr;
    return released([&] {
        irc_column_grad_sums(at<const float>(v[0]), at<const float>(v[1]), v[2], v[3], at<const double>(v[4]),
            at<const double>(v[5]), at<double>(v[6]), at<double>(v[7]), v[8]);
    });
}

PyObject* csr_rows_add(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[19];
    if (!parse("csr_rows_add", args, nargs, "piippippipiippipiii", v)) return nullptr;
    return released([&] {
        return irc_csr_rows_add(at<float>(v[0]), v[1], v[2], at<const int64_t>(v[3]), at<const void>(v[4]), v[5],
            at<const float>(v[6]), at<const void>(v[7]), v[8], at<const float>(v[9]), v[10], v[11],
            at<const float>(v[12]), at<const float>(v[13]), v[14], at<float>(v[15]), v[16], v[17], v[18]);
    });
}

PyObject* transpose(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[4];
    if (!parse("transpose", args, nargs, "piip", v)) return nullptr;
    return released([&] {
        irc_transpose(at<const float>(v[0]), v[1], v[2], at<float>(v[3]));
    });
}

PyObject* count_neighbors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[7];
    if (!parse("count_neighbors", args, nargs, "piiiipi", v)) return nullptr;
    return released([&] {
        return irc_count_neighbors(at<const void>(v[0]), v[1], v[2], v[3], v[4], at<int64_t>(v[5]), v[6]);
    });
}

PyObject* compact_neighbors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[9];
    if (!parse("compact_neighbors", args, nargs, "piiipppii", v)) return nullptr;
    return released([&] {
        return irc_compact_neighbors(at<const void>(v[0]), v[1], v[2], v[3], at<const int64_t>(v[4]), at<int64_t>(v[5]),
            at<int64_t>(v[6]), v[7], v[8]);
    });
}

PyObject* merge_neighbors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[15];
    if (!parse("merge_neighbors", args, nargs, "pppiiipipppipii", v)) return nullptr;
    return released([&] {
        return irc_merge_neighbors(at<const int64_t>(v[0]), at<const int64_t>(v[1]), at<const void>(v[2]), v[3], v[4],
            v[5], at<const int64_t>(v[6]), v[7], at<const int64_t>(v[8]), at<const int64_t>(v[9]),
            at<const int64_t>(v[10]), v[11], at<void>(v[12]), v[13], v[14]);
    });
}

PyObject* candidate_counts(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[18];
    if (!parse("candidate_counts", args, nargs, "piiipipipppppiiipi", v)) return nullptr;
    return released([&] {
        return irc_candidate_counts(at<const void>(v[0]), v[1], v[2], v[3], at<const int64_t>(v[4]), v[5],
            at<const int64_t>(v[6]), v[7], at<const int64_t>(v[8]), at<const int64_t>(v[9]), at<const int64_t>(v[10]),
            at<const int64_t>(v[11]), at<const int64_t>(v[12]), v[13], v[14], v[15], at<int64_t>(v[16]), v[17]);
    });
}

PyObject* candidate_fill(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[21];
    if (!parse("candidate_fill", args, nargs, "piiipipipppppiiipppii", v)) return nullptr;
    return released([&] {
        return irc_candidate_fill(at<const void>(v[0]), v[1], v[2], v[3], at<const int64_t>(v[4]), v[5],
            at<const int64_t>(v[6]), v[7], at<const int64_t>(v[8]), at<const int64_t>(v[9]), at<const int64_t>(v[10]),
            at<const int64_t>(v[11]), at<const int64_t>(v[12]), v[13], v[14], v[15], at<const int64_t>(v[16]),
            at<int64_t>(v[17]), at<int64_t>(v[18]), v[19], v[20]);
    });
}

PyObject* argsort_keys(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[5];
    if (!parse("argsort_keys", args, nargs, "piipp", v)) return nullptr;
    return released([&] {
        return irc_argsort_keys(at<const int64_t>(v[0]), v[1], v[2], at<int64_t>(v[3]), at<int64_t>(v[4]));
    });
}

PyObject* rank_sorted(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[4];
    if (!parse("rank_sorted", args, nargs, "pipp", v)) return nullptr;
    return released([&] {
        return irc_rank_sorted(at<const int64_t>(v[0]), v[1], at<int64_t>(v[2]), at<int64_t>(v[3]));
    });
}

PyObject* candidate_outputs(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[7];
    if (!parse("candidate_outputs", args, nargs, "ppipipi", v)) return nullptr;
    return released([&] {
        return irc_candidate_outputs(at<const int64_t>(v[0]), at<const int64_t>(v[1]), v[2], at<const int64_t>(v[3]),
            v[4], at<int64_t>(v[5]), v[6]);
    });
}

PyObject* fill_new_neighbors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[10];
    if (!parse("fill_new_neighbors", args, nargs, "ppipppiiii", v)) return nullptr;
    return released([&] {
        return irc_fill_new_neighbors(at<const int64_t>(v[0]), at<const int64_t>(v[1]), v[2], at<const int64_t>(v[3]),
            at<const int64_t>(v[4]), at<void>(v[5]), v[6], v[7], v[8], v[9]);
    });
}

PyObject* sort_pairs(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[8];
    if (!parse("sort_pairs", args, nargs, "pppiiiip", v)) return nullptr;
    return released([&] {
        return irc_sort_pairs(at<const int64_t>(v[0]), at<const int64_t>(v[1]), at<const int64_t>(v[2]), v[3], v[4],
            v[5], v[6], at<int64_t>(v[7]));
    });
}

PyObject* hash_build(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[5];
    if (!parse("hash_build", args, nargs, "piipp", v)) return nullptr;
    return released([&] {
        return irc_hash_build(at<const int64_t>(v[0]), v[1], v[2], at<int64_t>(v[3]), at<int64_t>(v[4]));
    });
}

PyObject* hash_lookup(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[7];
    if (!parse("hash_lookup", args, nargs, "ppipipi", v)) return nullptr;
    return released([&] {
        return irc_hash_lookup(at<const int64_t>(v[0]), at<const int64_t>(v[1]), v[2], at<const int64_t>(v[3]), v[4],
            at<int64_t>(v[5]), v[6]);
    });
}

PyObject* hash_lookup_neighbors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[12];
    if (!parse("hash_lookup_neighbors", args, nargs, "ppipiiipippi", v)) return nullptr;
    return released([&] {
        return irc_hash_lookup_neighbors(at<const int64_t>(v[0]), at<const int64_t>(v[1]), v[2], at<const void>(v[3]),
            v[4], v[5], v[6], at<const int64_t>(v[7]), v[8], at<const int64_t>(v[9]), at<int64_t>(v[10]), v[11]);
    });
}

PyObject* unpack_keys(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[6];
    if (!parse("unpack_keys", args, nargs, "pipipi", v)) return nullptr;
    return released([&] {
        return irc_unpack_keys(at<const int64_t>(v[0]), v[1], at<const int64_t>(v[2]), v[3], at<int32_t>(v[4]), v[5]);
    });
}

PyObject* scatter_add_owned(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[8];
    if (!parse("scatter_add_owned", args, nargs, "piipipii", v)) return nullptr;
    return released([&] {
        return irc_scatter_add_owned(at<void>(v[0]), v[1], v[2], at<const int64_t>(v[3]), v[4], at<const void>(v[5]),
            v[6], v[7]);
    });
}

PyObject* csr_rows_add_plain(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    int64_t v[12];
    if (!parse("csr_rows_add_plain", args, nargs, "piippipipiii", v)) return nullptr;
    return released([&] {
        return irc_csr_rows_add_plain(at<void>(v[0]), v[1], v[2], at<const int64_t>(v[3]), at<const int64_t>(v[4]),
            v[5], at<const void>(v[6]), v[7], at<const void>(v[8]), v[9], v[10], v[11]);
    });
}

#define KERNEL(name) {#name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(name)), METH_FASTCALL, nullptr}

PyMethodDef methods[] = {
    KERNEL(version), KERNEL(use_openmp), KERNEL(conv_accumulate), KERNEL(conv_weight_grad),
    KERNEL(nonzero_rows_matmul), KERNEL(csr_weight_grad), KERNEL(rows_outer), KERNEL(column_moments),
    KERNEL(column_grad_sums), KERNEL(csr_rows_add), KERNEL(transpose),
    KERNEL(count_neighbors), KERNEL(compact_neighbors), KERNEL(merge_neighbors), KERNEL(candidate_counts),
    KERNEL(candidate_fill), KERNEL(argsort_keys), KERNEL(rank_sorted), KERNEL(candidate_outputs),
    KERNEL(fill_new_neighbors), KERNEL(sort_pairs), KERNEL(hash_build), KERNEL(hash_lookup),
    KERNEL(hash_lookup_neighbors), KERNEL(unpack_keys), KERNEL(scatter_add_owned), KERNEL(csr_rows_add_plain),
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gather_gemm_scatter", "irregconv's native CPU kernels", -1, methods,
                      nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__gather_gemm_scatter() { return PyModule_Create(&module); }
