/* Preloaded into Python under memcheck (python_conformance_valgrind) in place
 * of a suppressions file.
 *
 * CPython 3.11 allocates every int with at least one digit and leaves that
 * digit unwritten when the value is 0 (longintrepr.h: "ob_digit[0] may be
 * undefined"), then computes the small-int cache index as size * ob_digit[0].
 * Memcheck cannot see that a product with 0 is defined, so the pointer to the
 * cached 0 comes out "uninitialised", and every later use of it, anywhere in
 * the interpreter (eval loop, GC traversal, comparisons), is reported:
 * 976 errors from 45 contexts in one run of run_cases.py, all of them with
 * their origin in _PyLong_New. Suppressing them would mean suppressing those
 * generic interpreter stacks, which an uninitialised count coming back from
 * fastsock would produce too. Instead this wrapper does what CPython 3.12's
 * _PyLong_New does (python/cpython#102509): it writes 0 to ob_digit[0]. A
 * caller that fills the digits overwrites it, so an uninitialised value put
 * into an int (fastsock's counts included) is still reported.
 *
 * Valgrind redirects every call of _PyLong_New to the wrapper, PLT or not:
 * in libpython (a --enable-shared build, as pyenv's here) or in the
 * executable itself (a static libpython). Outside valgrind nothing calls it. */
#include <Python.h>
#include <valgrind/valgrind.h>

/* 3.10 tests the size before reading the digit; 3.12 writes the digit. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000

#define FASTSOCK_WRAP_PYLONG_NEW(soname)                                         \
    PyLongObject *I_WRAP_SONAME_FNNAME_ZU(soname, _PyLong_New)(Py_ssize_t size); \
    PyLongObject *I_WRAP_SONAME_FNNAME_ZU(soname, _PyLong_New)(Py_ssize_t size) \
    {                                                                            \
        OrigFn fn;                                                               \
        PyLongObject *r;                                                         \
        VALGRIND_GET_ORIG_FN(fn);                                                \
        CALL_FN_W_W(r, fn, size);                                                \
        if (r != NULL)                                                           \
            r->ob_digit[0] = 0;                                                  \
        return r;                                                                \
    }

FASTSOCK_WRAP_PYLONG_NEW(libpython3Zd11ZdsoZa) /* libpython3.11.so* */
FASTSOCK_WRAP_PYLONG_NEW(NONE)                 /* the main executable */

#endif
