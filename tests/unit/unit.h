/*
 * unit.h - what every Check suite of clonefs shares.
 */
#ifndef CLONEFS_TESTS_UNIT_H
#define CLONEFS_TESTS_UNIT_H

#include <check.h>
#include <stdlib.h>

/* Run @s (forking each test, Check's default); the exit status of main. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
