/* mk_strerror: every code has its own message; unknown codes say so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "memkit/error.h"

#define FIRST_CODE MK_EINVAL
#define LAST_CODE  MK_EEMPTY

static void every_code_has_its_own_message(void **state) {
    (void)state;
    const char *unknown = mk_strerror(1000);
    assert_string_equal(unknown, "unknown error");
    assert_string_equal(mk_strerror(LAST_CODE - 1), "unknown error");
    for (int a = FIRST_CODE; a >= LAST_CODE; a--) {
        const char *msg = mk_strerror(a);
        assert_non_null(msg);
        assert_string_not_equal(msg, unknown);
        for (int b = a - 1; b >= LAST_CODE; b--) assert_string_not_equal(msg, mk_strerror(b));
    }
    assert_string_not_equal(mk_strerror(MK_OK), unknown);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_code_has_its_own_message)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
