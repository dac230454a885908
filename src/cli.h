/*
 * cli.h - what the commands of the clonefs tool share: src/cli.c (the
 * commands, argument parsing, talking to the daemon) and src/cli_wait.c
 * (clonefs wait and its progress display).
 */
#ifndef CLONEFS_CLI_H
#define CLONEFS_CLI_H

#include <glib.h>
#include <stdbool.h>
#include <stdio.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_FELL_BACK 3	/* check: repaired by falling back to an older transaction */
#define EXIT_TIMEOUT 124
#define EXIT_INTERRUPTED 130

struct command {
	const char *name;
	const char *synopsis;
	const char *help;
	int (*run)(const struct command *cmd, int argc, char **argv);
};

/* An option of a subcommand: a flag (@flag) or one with a value (@value). */
struct optdef {
	const char *name;  /* "--json" */
	const char *alias; /* "-n", or NULL */
	bool *flag;
	const char **value;
};

/* "clonefs: " and a message on stderr, on a line of its own (ending a
 * progress bar line left open with cli_line_open()). */
void G_GNUC_PRINTF(1, 2) errmsg(const char *fmt, ...);
/* @f has a line without its newline yet (a progress bar); NULL: none. */
void cli_line_open(FILE *f);
/* End the line left open, if any. */
void cli_line_end(void);
/* A usage error of @cmd (NULL: of the tool) on stderr; returns EXIT_USAGE. */
int G_GNUC_PRINTF(2, 3) usage_error(const struct command *cmd, const char *fmt, ...);

/*
 * Sort argv into @opts and positional arguments (@pos, @npos). Options may
 * come anywhere; "--opt=V" and "--opt V" both work; "--" ends options.
 * -h/--help prints the command's help and exits. Returns 0 or EXIT_USAGE.
 */
int parse_args(const struct command *cmd, int argc, char **argv,
	       const struct optdef *opts, char **pos, int *npos);
/* Seconds as a decimal ("60", "0.5"); >= @min. 0 or -EINVAL. */
int parse_seconds(const char *s, double min, double *out);

/* MOUNTPOINT/image, or ARG itself when it is not a directory (the image).
 * NULL, with the reason printed, if ARG cannot be looked at. */
char *image_path(const char *arg);
/* The status attribute @name of ARG (a mountpoint or the image), or NULL
 * with the reason printed. */
char *get_status(const char *arg, const char *name);

/* clonefs wait (cli_wait.c). */
int cmd_wait(const struct command *cmd, int argc, char **argv);
/* clonefs profile (cli_profile.c). */
int cmd_profile(const struct command *cmd, int argc, char **argv);

#endif
