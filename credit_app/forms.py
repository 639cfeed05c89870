"""HTML forms (flask-wtf, CSRF on)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField("Repeat password",
                            validators=[DataRequired(), EqualTo("password",
                                                                "The passwords do not match.")])


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    remember = BooleanField("Keep me signed in")


class ApiTokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(min=1, max=80)])


class GrantForm(FlaskForm):
    amount = IntegerField("Credits", validators=[DataRequired(), NumberRange(min=1, max=100_000)])
    reason = StringField("Reason", validators=[DataRequired(), Length(min=1, max=500)])
